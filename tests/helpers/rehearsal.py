"""Test helpers around `geodistill cluster rehearse`: a head + two worker nodes on 127.0.0.1.

The cluster runs in its own child process (the user's command, unchanged), so this test process
keeps no Ray state and no token-auth environment. ``Rehearsal`` reads the command's JSON
manifest, records every process of the cluster (the command's descendants) while it runs, and
on exit stops it with SIGINT (the command's Ctrl-C path) and checks that none of those processes
is left (SIGKILLing any straggler so a failed test leaves nothing behind either).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from geodistill.platform.runtime.ray_local import listening_addresses

REPO = Path(__file__).resolve().parents[2]


class Rehearsal:
    def __init__(self, root: Path, *, workers: int = 2, cpus_per_node: int = 1) -> None:
        self.root = root
        self.manifest_path = root / "rehearsal.json"
        self.log_path = root / "rehearsal.log"
        self.workers, self.cpus_per_node = workers, cpus_per_node
        root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.manifest: dict = {}
        # pid -> start time: a pid the kernel reuses for another process is not ours.
        self.seen: dict[int, float] = {}

    # ------------------------------------------------------------ start / stop

    def __enter__(self) -> Rehearsal:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GEODISTILL_"))}
        # The job's driver runs `python` from the head's PATH: this environment's, as after `source .venv/bin/activate`.
        path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", PATH=path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "geodistill", "cluster", "rehearse", "--workers", str(self.workers),
             "--cpus-per-node", str(self.cpus_per_node), "--manifest", str(self.manifest_path)],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 600  # up to 5 starts of Ray's 30 s node limit on a loaded machine
        while not self.manifest_path.is_file():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("rehearsal cluster did not start:\n" + self.log_path.read_text()[-4000:])
            time.sleep(0.3)
        self.manifest = json.loads(self.manifest_path.read_text())
        self.processes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.3)
        self.left_behind = self.alive()
        for pid in self.left_behind:  # a failed teardown must not leak processes into the machine
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        folder = self.manifest.get("folder")
        if folder and Path(folder).exists():  # its temp dir and token must go with the cluster
            shutil.rmtree(folder, ignore_errors=True)
            self.left_behind.append(folder)
        self.proc = None

    # ------------------------------------------------------------ looking at it

    @property
    def dashboard(self) -> str:
        return self.manifest["dashboard_url"]

    @property
    def address(self) -> str:
        return self.manifest["gcs_address"]

    def node_id(self, name: str) -> str:
        return self.manifest["nodes"][name]["node_id"]

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client's environment: the cluster's token, no Ray state of this test process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GEODISTILL_"))}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=self.manifest["token_path"],
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            OMP_NUM_THREADS="1",
            **extra,
        )
        return env

    def processes(self) -> list[psutil.Process]:
        """Every live process of the cluster (the command and its descendants); remembered."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        self._remember(procs)
        return procs

    def _remember(self, procs: list[psutil.Process]) -> None:
        for p in procs:
            try:
                self.seen.setdefault(p.pid, p.create_time())
            except psutil.NoSuchProcess:
                continue

    def alive(self) -> list[int]:
        out = []
        for pid, started in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                continue
        return out

    def exposed(self) -> set[str]:
        """Addresses other than loopback on which any process of the cluster listens."""
        pids = [p.pid for p in self.processes()]
        return {
            a
            for a in listening_addresses(pids)
            if not ipaddress.ip_address(a.removeprefix("::ffff:")).is_loopback
        }

    def node_processes(self, name: str) -> list[psutil.Process]:
        """A node's raylet and everything it started (its workers, its agents)."""
        raylet = psutil.Process(self.manifest["nodes"][name]["raylet_pid"])
        return [raylet, *raylet.children(recursive=True)]

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL a worker node: its raylet and every process under it (a preempted machine)."""
        procs = self.node_processes(name)
        self._remember(procs)
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return [p.pid for p in procs]

    # ------------------------------------------------------------ jobs

    def ray(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The `ray` CLI of this environment against the rehearsal dashboard."""
        ray_cli = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
        return subprocess.run(
            [*ray_cli, *args],
            env=self.client_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def job_status(self, job: str) -> str:
        """The job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED) from the job API.

        Not parsed from `ray job status`: that prints a finished job as "Job 'x' failed".
        """
        code = (
            "import sys; from ray.job_submission import JobSubmissionClient; "
            "print(JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)"
        )
        run = subprocess.run(
            [sys.executable, "-c", code, self.dashboard, job],
            env=self.client_env(), cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if run.returncode != 0:
            raise RuntimeError(f"cannot read the status of job {job}: {run.stderr[-2000:]}")
        return run.stdout.strip().splitlines()[-1]

    def submit(
        self, *entrypoint: str, wait: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """The README's recipe: `ray job submit --working-dir . --runtime-env-json py_modules -- ...`."""
        return self.ray(
            "job", "submit", "--address", self.dashboard, "--working-dir", ".",
            "--runtime-env-json", '{"py_modules": ["src/geodistill"]}',
            *([] if wait else ["--no-wait"]), "--", *entrypoint, timeout=timeout,
        )  # fmt: skip
