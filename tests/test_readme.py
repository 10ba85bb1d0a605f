"""The README as a new user walks it: its command blocks run as written, so docs cannot drift.

Every fenced ``bash``, ``python`` and ``sql`` block of README.md and clusters/README.md is read;
each command is either run (in document order, in one fresh bash from the root of a clean
clone, with a private HOME and a PATH that does not hold the venv: the README's own ``source
.venv/bin/activate`` line is what puts ``geodistill`` there) or named in ``NOT_RUNNABLE`` with
the reason. A command that is neither fails the fast test, so a new block must be placed; an
entry of ``NOT_RUNNABLE`` that matches nothing fails it too, so the list cannot go stale.
``DEMO_SIZED`` holds the one substitution: ``make demo`` runs what it runs, at smoke size.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "clusters/README.md")

# Command prefix -> why it is not run by this test.
NOT_RUNNABLE = {
    "make test": "the test suite itself (this test is part of its second tier)",
    "geodistill train stage=teacher data=univ": "needs a real UniV copy at /data/UniV",
    "geodistill train stage=student model=convnext_atto": "needs the /data/UniV teacher of the block above",
    "geodistill eval runs/student_convnext_atto": "needs the /data/UniV runs of the block above",
    "geodistill train stage=student model.backbone=convnext_tiny": "downloads pretrained weights",
    "geodistill export runs/student_convnext_tiny": "needs the pretrained run of the block above",
    "geodistill search search_space=distill": "a 64-trial search from a /data/UniV teacher",
    "geodistill report --experiment distill-v1": "reports the search above",
    "export RAY_AUTH_MODE=token": "the job recipe: run verbatim by tests/platform/clusters/test_recipe.py",
    "ray get-auth-token": "the job recipe: tests/platform/clusters/test_recipe.py",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start": "the job recipe: tests/platform/clusters/test_recipe.py",
    "ray job submit": "needs a Ray head (the recipe: tests/platform/clusters/test_recipe.py)",
    "make image": "needs a Docker daemon",
    "docker push": "needs a registry",
    "ray up": "launches cloud machines",
    "ray dashboard": "needs a launched cluster",
    "ray job list": "needs a launched cluster",
    "ray job logs": "needs a launched cluster",
    "ray job stop": "needs a launched cluster",
    "aws s3 sync": "needs a bucket",
    "GEODISTILL_LEADERBOARD=./leaderboard geodistill report": "reports the cloud search above",
    "ray down": "tears a launched cluster down",
    "kubectl": "needs a Kubernetes cluster with KubeRay",
    "geodistill train stage=teacher model=dinov2_base": "needs a real UniV copy at /data/UniV",
    "from geodistill.platform.compose import compose_run_config": "a 64-trial search (Python API)",
}
# make demo would create .venv (an install); the test runs what it runs, at smoke size.
DEMO_SIZED = {"make demo": ".venv/bin/geodistill demo --smoke-test"}


def doc_commands(path: Path) -> list[tuple[str, str]]:
    """(language, command) in document order: a bash block gives one command per line
    (continuations joined), a python or sql block is one command."""
    out = []
    for lang, body in re.findall(r"^```(bash|python|sql)\n(.*?)^```", path.read_text(), re.S | re.M):
        if lang != "bash":
            out.append((lang, body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if shlex.split(line, comments=True):
                out.append((lang, line.strip()))
    return out


def _skip_reason(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUNNABLE.items() if command.lstrip().startswith(prefix)), None)


def _plan() -> list[tuple[str, str]]:
    return [(lang, cmd) for doc in DOCS for lang, cmd in doc_commands(REPO / doc) if not _skip_reason(cmd)]


def test_every_readme_command_is_run_or_says_why_not():
    commands = [cmd for doc in DOCS for _, cmd in doc_commands(REPO / doc)]
    stale = [p for p in NOT_RUNNABLE if not any(c.lstrip().startswith(p) for c in commands)]
    assert stale == [], f"NOT_RUNNABLE entries that match no README command: {stale}"
    runnable = [cmd for _, cmd in _plan()]
    assert any(c.startswith("source .venv/bin/activate") for c in runnable)
    assert any(shlex.split(c, comments=True) == ["make", "demo"] for c in runnable)
    assert any("leaderboard show" in c for c in runnable)


def _script(plan: list[tuple[str, str]], work: Path) -> str:
    """One bash script: each command echoed before it runs, python/sql blocks from files."""
    lines = ["set -euo pipefail"]
    for i, (lang, cmd) in enumerate(plan):
        if lang == "python":
            (work / f"block{i}.py").write_text(cmd)
            cmd = f"python {work / f'block{i}.py'}"
        elif lang == "sql":
            (work / f"block{i}.sql").write_text(cmd)
            cmd = f"python -c 'import duckdb, sys; print(duckdb.sql(open(sys.argv[1]).read()))' {work / f'block{i}.sql'}"
        sized = next(
            (new for old, new in DEMO_SIZED.items() if shlex.split(cmd, comments=True) == old.split()), cmd
        )
        lines += [f"echo {shlex.quote('>>> ' + cmd.splitlines()[0])}", sized]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_readme_runs_as_written(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    (clone / ".venv").symlink_to(Path(sys.prefix))  # what `make` would have created, already installed
    venv_bins = {str(Path(sys.prefix) / "bin"), str(Path(sys.executable).parent)}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in venv_bins]
    drop = ("VIRTUAL_ENV", "RAY_ADDRESS", "GEODISTILL_LEADERBOARD", "GEODISTILL_SEARCH_SPACES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        PATH=os.pathsep.join(path),
        HOME=str(tmp_path / "home"),
        PYTHONPATH=str(clone / "src"),  # the shared venv's editable install points elsewhere
        OMP_NUM_THREADS="1",
    )
    (tmp_path / "home").mkdir()
    probe = subprocess.run(
        ["bash", "-c", "command -v geodistill || true"], env=env, capture_output=True, text=True
    )
    assert probe.stdout.strip() == "", "the fresh shell must not have geodistill on PATH before activation"
    script = tmp_path / "readme.sh"
    script.write_text(_script(_plan(), tmp_path))
    run = subprocess.run(
        ["bash", str(script)], cwd=clone, env=env, capture_output=True, text=True, timeout=2300
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-8000:]
    # What the commands must have produced, in the clone, where the README says.
    assert (clone / "demo_out" / "student" / "model.safetensors").is_file()
    assert (clone / "demo_out" / "exported" / "config.json").is_file()
    assert (clone / "baselines" / "example_student.golden.npy").is_file()
    assert "(0 rows)" not in log and re.search(r"\(\d+ rows?\)", log)
    assert "row_key" in log  # the pandas/polars/DuckDB readers printed the demo's rows
