"""``ray up`` / ``ray down`` on one machine: a node provider and command runner for the rehearsal.

Why: the cloud files are only ever launched on a paid cloud; ``clusters/rehearsal.yaml`` (the same
node types) goes through the real cluster launcher and autoscaler here. Ray's own fake provider
starts workers on the host's network address, its head cannot be created by ``ray up`` and its
``ray down`` runs ``ray stop`` (every Ray of this user on a shared machine). This provider
(``provider: type: external``) keeps its nodes in a JSON file of the rehearsal's private folder
(``ray up``, the head's autoscaler and ``ray down`` are three processes), starts each worker as
a raylet on 127.0.0.1 joined to the head's GCS, and runs the launcher's commands with bash on
this machine with ``HOME`` inside that folder. ``ray stop`` becomes "stop this cluster's
processes": those naming the folder. ``up``/``down`` wrap ``ray up``/``ray down`` (private 0700
folder, free ports, a fresh token; the folder removed with the cluster).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray.autoscaler.command_runner import CommandRunnerInterface
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from geodistill.platform.clusters.folders import DIR_ENV, cluster_processes, stop_processes, sweep_stale

LOOPBACK = "127.0.0.1"
PREFIX = "gdup"  # /tmp/gdupXXXX: short, Ray's unix sockets live under it (108-byte sun_path)
PORTS = ("GCS", "DASHBOARD", "CLIENT", "AGENT", "METRICS", "RUNTIME_ENV")
HEAD_ID = "head"
_RAY_STOP = re.compile(r"^(?:export [^;]*;\s*)*ray stop\b")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((LOOPBACK, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class LoopbackCommandRunner(CommandRunnerInterface):
    """Runs the launcher's commands with bash on this machine, ``~`` being the rehearsal's home."""

    def __init__(self, folder: Path, log_prefix: str = "") -> None:
        self.folder, self.home, self.log_prefix = folder, folder / "home", log_prefix

    def _env(self, extra: dict[str, object] | None) -> dict[str, str]:
        env = dict(os.environ, HOME=str(self.home), TMPDIR=str(self.folder / "tmp"))
        env.update(json.loads((self.folder / "env.json").read_text()))
        for key, value in (extra or {}).items():
            env[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        return env

    def run(
        self,
        cmd: str | None = None,
        timeout: int = 120,
        exit_on_fail: bool = False,
        port_forward: Any = None,
        with_output: bool = False,
        environment_variables: dict[str, object] | None = None,
        run_env: str = "auto",
        ssh_options_override_ssh_key: str = "",
        shutdown_after_run: bool = False,
    ) -> str:
        if not cmd:
            return ""
        if _RAY_STOP.match(cmd.strip()):  # `ray down`: this cluster only, never every Ray of the user
            stop_processes(cluster_processes(self.folder))
            return ""
        done = subprocess.run(
            ["bash", "-c", cmd], env=self._env(environment_variables), cwd=self.home,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        with (self.folder / "commands.log").open("a") as log:
            log.write(f"$ {cmd}\n{done.stdout}{done.stderr}[exit {done.returncode}]\n")
        if done.returncode != 0:
            from ray.autoscaler._private.command_runner import ProcessRunnerError

            raise ProcessRunnerError(
                f"command failed: {cmd}",
                "ssh_command_failed",
                code=done.returncode,
                command=["bash", "-c", cmd],
            )
        return done.stdout.encode() if with_output else ""

    def _local(self, path: str) -> Path:
        return Path(path.replace("~", str(self.home), 1) if path.startswith("~") else path)

    def run_rsync_up(self, source: str, target: str, options: dict[str, Any] | None = None) -> None:
        dest = self._local(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest)

    def run_rsync_down(self, source: str, target: str, options: dict[str, Any] | None = None) -> None:
        src = self._local(source)
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)

    def remote_shell_command_str(self) -> str:
        return f"HOME={self.home} bash"


class LoopbackNodeProvider(NodeProvider):
    """Nodes on 127.0.0.1: the head is whatever ``head_start_ray_commands`` start; a worker is a raylet."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        folder = os.environ.get(DIR_ENV)
        if not folder or not Path(folder, "env.json").is_file():
            raise RuntimeError(
                f"{DIR_ENV} is not set to a rehearsal folder: launch with "
                "`python -m geodistill.platform.clusters.loopback up clusters/rehearsal.yaml`"
            )
        self.folder = Path(folder)
        self._started: dict[str, Any] = {}  # node id -> ray._private.node.Node started by this process

    # ------------------------------------------------------------ the node table (a locked JSON file)

    @contextlib.contextmanager
    def _table(self) -> Iterator[dict[str, Any]]:
        path = self.folder / "nodes.json"
        with open(self.folder / "nodes.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            nodes = json.loads(path.read_text()) if path.is_file() else {}
            yield nodes
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(nodes))
            tmp.replace(path)

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        with self._table() as nodes:
            return [
                n
                for n, d in nodes.items()
                if n != "_launched" and all(d["tags"].get(k) == v for k, v in tag_filters.items())
            ]

    def is_running(self, node_id: str) -> bool:
        with self._table() as nodes:
            return node_id in nodes and node_id != "_launched"

    def is_terminated(self, node_id: str) -> bool:
        return not self.is_running(node_id)

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._table() as nodes:
            return dict(nodes[node_id]["tags"])

    def set_node_tags(self, node_id: str, tags: dict[str, str]) -> None:
        with self._table() as nodes:
            nodes[node_id]["tags"].update(tags)

    def external_ip(self, node_id: str) -> str:
        return LOOPBACK

    def internal_ip(self, node_id: str) -> str:
        return LOOPBACK

    # ------------------------------------------------------------ creating and terminating nodes

    def create_node(self, node_config: dict[str, Any], tags: dict[str, str], count: int) -> dict[str, Any]:
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    def create_node_with_resources_and_labels(
        self,
        node_config: dict[str, Any],
        tags: dict[str, str],
        count: int,
        resources: dict[str, float],
        labels: dict[str, str],
    ) -> dict[str, Any]:
        if tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD:  # `ray up`: its start commands start it
            with self._table() as nodes:
                nodes[HEAD_ID] = {"tags": dict(tags), "pid": None}
            return {}
        for _ in range(count):
            self._start_worker(tags, dict(resources), dict(labels or {}))
        return {}

    def _start_worker(
        self, tags: dict[str, str], resources: dict[str, float], labels: dict[str, str]
    ) -> None:
        import ray._private.ray_constants as ray_constants
        from ray._private.node import Node
        from ray._private.parameter import RayParams

        with self._table() as nodes:
            nodes["_launched"] = nodes.get("_launched", 0) + 1  # ids are never reused
            node_id = f"worker{nodes['_launched']:03d}"
            nodes[node_id] = {"tags": dict(tags), "pid": None}
        # `ray up` gave the head's start command the head's resources and type in these; the
        # autoscaler inherited them, and Ray would apply them to this node too.
        for name in (ray_constants.RESOURCES_ENVIRONMENT_VARIABLE, ray_constants.LABELS_ENVIRONMENT_VARIABLE):
            os.environ.pop(name, None)
        node_type = tags[TAG_RAY_USER_NODE_TYPE]
        agent, metrics = _free_ports(2)
        params = RayParams(
            node_ip_address=LOOPBACK,
            gcs_address=f"{LOOPBACK}:{os.environ['GD_GCS_PORT']}",
            min_worker_port=0,
            max_worker_port=0,
            dashboard_agent_listen_port=agent,
            metrics_export_port=metrics,
            num_cpus=resources.pop("CPU", 0),
            num_gpus=resources.pop("GPU", 0),
            object_store_memory=100 * 1024 * 1024,
            resources=resources,
            labels=labels,
            runtime_env_dir_name=f"runtime_resources_{node_id}",  # its own disk, as a machine would have
            env_vars={
                "RAY_CLOUD_INSTANCE_ID": node_id,  # how the autoscaler (v2) matches raylet to instance
                "RAY_NODE_TYPE_NAME": node_type,
            },
        )
        node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
        self._started[node_id] = node
        with self._table() as nodes:
            nodes[node_id]["pid"] = node.all_processes["raylet"][0].process.pid

    def terminate_node(self, node_id: str) -> None:
        import psutil

        with self._table() as nodes:
            entry = nodes.pop(node_id, None)
        if entry is None:
            return
        if node_id == HEAD_ID:  # `ray down`: everything of the cluster that is still running
            stop_processes(cluster_processes(self.folder))
            return
        node = self._started.pop(node_id, None)
        if node is not None:
            node.kill_all_processes(check_alive=False, allow_graceful=True)
        elif entry.get("pid"):
            with contextlib.suppress(psutil.NoSuchProcess):
                raylet = psutil.Process(entry["pid"])
                stop_processes([raylet, *raylet.children(recursive=True)])

    def get_command_runner(
        self,
        log_prefix: str,
        node_id: str,
        auth_config: dict[str, Any],
        cluster_name: str,
        process_runner: Any,
        use_internal_ip: bool,
        docker_config: dict[str, Any] | None = None,
    ) -> CommandRunnerInterface:
        return LoopbackCommandRunner(self.folder, log_prefix)

    @staticmethod
    def bootstrap_config(cluster_config: dict[str, Any]) -> dict[str, Any]:
        return cluster_config


# ---------------------------------------------------------------- the wrapper around ray up / ray down


def prepare(folder: Path | None = None) -> dict[str, str]:
    """A private (0700) folder with a fresh token and free ports: the environment ``ray up`` runs in."""
    sweep_stale(PREFIX)
    folder = folder or Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
    folder.chmod(0o700)
    for sub in ("home", "tmp"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {f"GD_{name}_PORT": str(port) for name, port in zip(PORTS, _free_ports(len(PORTS)))}
    env.update(
        GD_RAY_TEMP=str(folder / "r"),  # Ray makes its temp dir 0777: inside a 0700 folder nobody else enters
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # single machine: Ray's detected address is 127.0.0.1
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        RAY_prestart_worker_first_driver="0",  # 48 declared CPUs must not mean 48 idle workers here
        **{DIR_ENV: str(folder)},
    )
    (folder / "env.json").write_text(json.dumps(env))
    return env


def client_env(env: dict[str, str]) -> dict[str, str]:
    """What a client (``ray job submit``) needs: the token and the dashboard's address."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": env["RAY_AUTH_TOKEN_PATH"],
        "RAY_ADDRESS": f"http://{LOOPBACK}:{env['GD_DASHBOARD_PORT']}",
    }


def ray_cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``ray ARGS`` (this Python's Ray) with the rehearsal's environment; Ray's temp files in its folder."""
    full = {**os.environ, **env, "TMPDIR": str(Path(env[DIR_ENV]) / "tmp")}
    code = "import sys; from ray.scripts.scripts import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def up(config: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``ray up -y --no-config-cache CONFIG`` in the rehearsal's environment."""
    return ray_cli("up", "-y", "--no-config-cache", config, env=env)


def down(config: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``ray down -y CONFIG``; then whatever still names the folder is stopped and the folder removed."""
    done = ray_cli("down", "-y", config, env=env)
    stop_processes(cluster_processes(env[DIR_ENV]))
    shutil.rmtree(env[DIR_ENV], ignore_errors=True)
    return done


def main(argv: list[str] | None = None) -> int:
    """``up CONFIG``: prepare, ``ray up``, print the client's exports (stdout, for ``eval``). ``down CONFIG``: ``ray down``, remove."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("up", "down"):
        print("usage: python -m geodistill.platform.clusters.loopback up|down CONFIG", file=sys.stderr)
        return 2
    if args[0] == "up":
        env = prepare()
        done = up(args[1], env)
        if done.returncode:  # stdout stays empty, so `eval "$(... up ...)"` sets nothing
            print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        exports = {**client_env(env), DIR_ENV: env[DIR_ENV]}
        print("cluster up; the client's environment (stdout, for eval):", file=sys.stderr)
        print("export " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in exports.items()))
        return 0
    folder = os.environ.get(DIR_ENV)
    if not folder or not Path(folder, "env.json").is_file():
        print(f"{DIR_ENV} must name the folder `up` printed", file=sys.stderr)
        return 2
    done = down(args[1], json.loads(Path(folder, "env.json").read_text()))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
