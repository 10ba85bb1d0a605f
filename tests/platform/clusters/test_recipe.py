"""The README's `ray job submit` recipe, run as written, from a fresh clone, on a head without geodistill.

The commands are read from the README's "On a cluster: `ray job submit`" block, so the docs
and this test cannot drift. What the test changes, and only that: the head gets free ports
and a private temp dir (inserted into its `ray start`), and the job address follows the
dashboard port, because other Ray instances share this machine. Everything else runs
verbatim in bash (one by one, each after the `export`s before it; a `ray start` that
hits Ray's fixed 30 s startup limit on an overloaded machine is retried) from the root of a
`git clone` of this repository, with:

- a head Python that cannot import geodistill: a separate venv whose site-packages links
  every distribution of the test's environment except geodistill (and its editable hook),
  with no PYTHONPATH; the job gets the package from the clone through its runtime env;
- a private HOME, so `ray get-auth-token --generate` makes this test's own token, and
  token auth is on (checked: a client without `RAY_AUTH_MODE=token` is refused, and
  `geodistill search --address` says so in one line).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from loopback_head import free_ports, non_loopback_listeners, pids_naming, stop_head

from geodistill.leaderboard import Leaderboard

REPO = Path(__file__).resolve().parents[3]
SECTION = "### On a cluster: `ray job submit`"
EXPERIMENT = "from-a-job"  # the README's --experiment


def readme_job_commands(readme: str) -> list[str]:
    """The shell commands of the first ```bash block under SECTION, continuation lines joined."""
    start = readme.index(SECTION)
    end = readme.find("\n### ", start + len(SECTION))
    section = readme[start : end if end != -1 else None]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no ```bash block under {SECTION!r}"
    joined = match.group(1).replace("\\\n", " ")
    # verbatim (bash expands "$PWD", honours redirections and trailing comments); blank lines dropped
    return [line for line in joined.splitlines() if shlex.split(line, comments=True)]


def test_readme_recipe_ships_the_checkout_with_token_auth_on_loopback():
    """Fast tier: the recipe the slow test runs has the shape the docs promise."""
    commands = readme_job_commands((REPO / "README.md").read_text())
    commands = [shlex.join(shlex.split(c, comments=True)) for c in commands]
    assert commands[0] == "export RAY_AUTH_MODE=token"
    assert any(c.startswith("ray get-auth-token --generate") for c in commands)
    (start,) = [c for c in commands if " ray start --head" in f" {c}"]
    assert start.startswith("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ")
    assert "--node-ip-address 127.0.0.1" in start and "--dashboard-host 127.0.0.1" in start
    assert "--disable-usage-stats" in start  # issue 29: the project's own heads never report usage
    (submit,) = [c for c in commands if c.startswith("ray job submit")]
    words = shlex.split(submit)
    assert words[words.index("--working-dir") + 1] == "."
    assert words[words.index("--runtime-env-json") + 1] == '{"py_modules": ["src/geodistill"]}'
    assert words[words.index("--") + 1 : words.index("--") + 5] == ["python", "-m", "geodistill", "search"]
    assert "pip" not in submit  # Ray 2.60 runs a runtime-env pip install in an empty directory


def _head_python(root: Path) -> Path:
    """A venv with every installed distribution of this interpreter except geodistill."""
    venv = root / "headvenv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(
        subprocess.run(
            [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout.strip()
    )  # fmt: skip
    for entry in ours.iterdir():
        if "geodistill" not in entry.name:  # the package, its dist-info, the editable finder
            (theirs / entry.name).symlink_to(entry)
    (venv / "bin/ray").write_text(
        f"#!{venv / 'bin/python'}\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n"
    )
    (venv / "bin/ray").chmod(0o755)
    return venv / "bin/python"


def _env(root: Path, head_python: Path) -> dict[str, str]:
    """A user's shell: the head venv first on PATH, a private HOME, nothing of the test's own setup."""
    drop = (
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "RAY_ADDRESS",
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("GEODISTILL_")}
    system_path = [
        p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "geodistill").exists()
    ]
    env.update(
        PATH=os.pathsep.join([str(head_python.parent), *system_path]),
        HOME=str(root / "home"),
        OMP_NUM_THREADS="1",
    )
    (root / "home").mkdir()
    return env


def _with_private_ports(commands: list[str], ports: list[int], temp_dir: str) -> tuple[list[str], str]:
    gcs, dashboard, client, agent, metrics = ports
    extra = (
        f" --port {gcs} --dashboard-port {dashboard} --ray-client-server-port {client}"
        f" --dashboard-agent-listen-port {agent} --metrics-export-port {metrics}"
        f" --num-cpus 2 --temp-dir {temp_dir}"  # --disable-usage-stats: the README has it
    )
    address = f"http://127.0.0.1:{dashboard}"
    out = []
    for command in commands:
        if "ray start --head" in command:
            command = command.replace("ray start --head", "ray start --head" + extra, 1)
        out.append(command.replace("http://127.0.0.1:8265", address))
    return out, address


# `ray start` gives its raylet a fixed 30 s to register with the GCS; on a machine shared by
# several test sessions that can run out. Only that failure is retried (head stopped first).
START_TIMED_OUT = "The current node timed out during startup"


def _run_in_order(script: list[str], *, env: dict[str, str], cwd: Path, temp_dir: str) -> str:
    """Run the lines one by one in bash (each after the `export`s before it); return their output."""
    exports, logs = [], []
    for command in script:
        for attempt in range(3):
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", "\n".join([*exports, command])],
                env=env, cwd=cwd, capture_output=True, text=True, timeout=1500,
            )  # fmt: skip
            logs.append(run.stdout + run.stderr)
            if run.returncode == 0 or START_TIMED_OUT not in logs[-1] or attempt == 2:
                break
            stop_head(temp_dir)
        assert run.returncode == 0, f"{command}\n" + "".join(logs)[-6000:]
        if command.startswith("export "):
            exports.append(command)
    return "".join(logs)


@pytest.mark.slow
def test_readme_job_recipe_runs_as_written_from_a_fresh_clone(tmp_path):
    commands = readme_job_commands((REPO / "README.md").read_text())
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    head_python = _head_python(tmp_path)
    env = _env(tmp_path, head_python)
    probe = subprocess.run(
        ["python", "-c", "import geodistill"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode != 0 and "No module named 'geodistill'" in probe.stderr, probe.stderr

    temp_dir = tempfile.mkdtemp(prefix="gdr", dir="/tmp")  # short: unix socket paths are limited
    ports = free_ports(5)
    script, address = _with_private_ports(commands, ports, temp_dir)
    try:
        logs = _run_in_order(script, env=env, cwd=clone, temp_dir=temp_dir)
        assert not non_loopback_listeners(temp_dir)

        # Token auth is on: a client without RAY_AUTH_MODE=token is refused ...
        no_auth = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
        listing = subprocess.run(
            ["ray", "job", "list", "--address", address],
            env=no_auth,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert listing.returncode != 0 and "Authentication required" in listing.stdout + listing.stderr
        # ... and a geodistill search that cannot authenticate says so in one line, before any training.
        refused = subprocess.run(
            ["python", "-m", "geodistill", "search", "search_space=smoke", "--smoke-test",
             "--address", f"127.0.0.1:{ports[0]}", "--leaderboard", str(tmp_path / "lb-refused")],
            env={**no_auth, "PYTHONPATH": str(clone / "src")}, cwd=clone, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert refused.stderr.strip().splitlines() == [
            f"geodistill search: error: cannot join Ray at '127.0.0.1:{ports[0]}': the cluster requires token "
            "authentication; set RAY_AUTH_MODE=token and give this process the cluster's token "
            "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
        ]
        assert "training a tiny teacher" not in refused.stdout
    finally:
        stop_head(temp_dir)
    assert not pids_naming(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)

    assert (tmp_path / "home/.ray/auth_token").is_file()  # the README's token, in the private HOME
    assert "Job 'raysubmit_" in logs and "succeeded" in logs, logs[-6000:]
    assert "Started a local Ray instance" not in logs  # the driver joined the job's head
    assert f"experiment {EXPERIMENT}: 2 leaderboard rows" in logs and "Pareto set" in logs
    rows = Leaderboard(clone / "runs/leaderboard").read(EXPERIMENT)
    assert rows.height == 2 and set(rows["status"]) <= {"ok", "stopped"}
    assert (rows["stage"] == "student").all() and rows["gflops"].min() > 0
    report = re.search(r"report: (\S+)", logs)
    assert report and Path(report.group(1)).is_file(), logs[-3000:]
    assert Path(report.group(1)).is_relative_to(clone / "runs/search" / EXPERIMENT)
