"""Cluster files: every shipped YAML validates (Ray's own schema + our checks); malformed ones fail in one line."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from geodistill.errors import ConfigError
from geodistill.platform.clusters.validate import ray_schema_path, validate_document, validate_file

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "clusters").rglob("*.yaml"))


def test_ships_launchers_for_aws_gcp_local_and_kuberay_manifests():
    kinds = {validate_file(p) for p in SHIPPED}
    assert kinds == {
        "launcher:aws", "launcher:gcp", "launcher:local", "launcher:external", "kuberay:RayCluster", "kuberay:RayJob"
    }  # fmt: skip
    assert ray_schema_path().is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_cluster_file_validates(path):
    validate_file(path)


def test_rayjob_entrypoint_is_a_geodistill_search():
    job = yaml.safe_load((REPO / "clusters/kuberay/rayjob.yaml").read_text())
    assert job["spec"]["entrypoint"].startswith("geodistill search search_space=")


def _aws() -> dict:
    return yaml.safe_load((REPO / "clusters/aws.yaml").read_text())


def _local() -> dict:
    return yaml.safe_load((REPO / "clusters/local.yaml").read_text())


def _kuberay() -> dict:
    return yaml.safe_load((REPO / "clusters/kuberay/raycluster.yaml").read_text())


def _rayjob() -> dict:
    return yaml.safe_load((REPO / "clusters/kuberay/rayjob.yaml").read_text())


def _set(d: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    for part in parents:
        d = d[int(part)] if isinstance(d, list) else d[part]
    key = int(last) if isinstance(d, list) else last
    if value is _DELETE:
        del d[key]
    else:
        d[key] = value
    return d


_DELETE = object()


@pytest.mark.parametrize(
    ("make", "edit", "message"),
    [
        # Ray's own preparation and schema (what `ray up` runs before touching a cloud)
        (
            _aws,
            ("max_workers", "many"),
            r"max_workers: 'many' is not of type 'integer' \(Ray cluster schema\)",
        ),
        (_aws, ("provider.type", "openstack"), r"provider\.type 'openstack' is not a Ray node provider"),
        (_aws, ("head_node_type", "boss"), r"`head_node_type` must be one of `available_node_types`"),
        (
            _aws,
            ("available_node_types.gpu_worker.resources.GPU", "four"),
            r"available_node_types\.gpu_worker\.resources\.GPU: 'four' is not of type 'integer'",
        ),
        (
            _aws,
            ("available_node_types.gpu_worker.min_workers", 9),
            r"smaller than the sum of `min_workers` of all the available node types",
        ),
        (_aws, ("worker_nodes", {"InstanceType": "m5.large"}), r"Additional properties are not allowed"),
        (_aws, ("docker.container_name", _DELETE), r"Must provide a container & image name"),
        (
            _local,
            ("available_node_types", {"head": {"resources": {}, "node_config": {}}}),
            r"The field available_node_types is not supported for on-premise clusters\. \(ray up",
        ),
        (_local, ("provider.worker_ips", _DELETE), r"Please supply a `head_ip` and list of `worker_ips`"),
        # our secure defaults on top
        (
            _aws,
            ("head_start_ray_commands.1", "ray start --head --dashboard-host=0.0.0.0"),
            r"binds the dashboard/job port to 0\.0\.0\.0",
        ),
        (_aws, ("head_start_ray_commands", _DELETE), r"binds the dashboard/job port to 0\.0\.0\.0"),
        (
            _aws,
            ("head_start_ray_commands.1", "ray start --head --port=80"),
            r"--port must be a port in 1024\.\.65535",
        ),
        (
            _aws,
            ("provider.aws_secret_access_key", "abc"),
            r"provider\.aws_secret_access_key holds a credential",
        ),
        # KubeRay: the CRD schema, then our checks
        (_kuberay, ("apiVersion", "ray.io/v1alpha1"), r"apiVersion must be ray\.io/v1"),
        (_kuberay, ("kind", "RayService"), r"kind must be one of RayCluster, RayJob"),
        (
            _kuberay,
            ("spec.headGroupSpec", _DELETE),
            r"spec: 'headGroupSpec' is a required property \(KubeRay",
        ),
        (
            _kuberay,
            ("spec.headGroupSpec.serviceTyp", "ClusterIP"),
            r"spec\.headGroupSpec: Additional properties are not allowed \('serviceTyp' was unexpected\)",
        ),
        (
            _kuberay,
            ("spec.workerGroupSpecs.0.replicas", "two"),
            r"spec\.workerGroupSpecs\.0\.replicas: 'two' is not of type 'integer' \(KubeRay RayCluster CRD",
        ),
        (
            _kuberay,
            ("spec.headGroupSpec.template.spec.containers.0.volumeMounts.0.mountPath", _DELETE),
            r"volumeMounts\.0: 'mountPath' is a required property",
        ),
        (_kuberay, ("spec.headGroupSpec.serviceType", "LoadBalancer"), r"serviceType 'LoadBalancer' exposes"),
        (
            _kuberay,
            ("spec.workerGroupSpecs.0.minReplicas", 3),
            r"need minReplicas <= replicas <= maxReplicas",
        ),
        (
            _kuberay,
            ("spec.workerGroupSpecs.0.template.spec.containers.0.image", _DELETE),
            r"containers must list containers with an image",
        ),
        (_rayjob, ("spec.entrypoint", _DELETE), r"spec\.entrypoint must be the job's command line"),
        (_rayjob, ("spec.shutdownAfterJobFinish", True), r"Additional properties are not allowed"),
    ],
)
def test_malformed_cluster_files_are_rejected_naming_the_key(make, edit, message):
    doc = make()
    _set(doc, *edit)
    with pytest.raises(ConfigError, match=message) as err:
        validate_document(doc)
    assert "\n" not in str(err.value)


# --- one image everywhere, data on shared storage --------------------------------------------

REHEARSAL = REPO / "clusters/rehearsal.yaml"  # runs on this machine: no image, no shared volume
LAUNCHERS = sorted(p for p in (REPO / "clusters").glob("*.yaml") if p != REHEARSAL)
MANIFESTS = sorted((REPO / "clusters/kuberay").glob("*.yaml"))


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _dockerfile() -> tuple[str, dict[str, str]]:
    """The Dockerfile's text (continuation lines joined) and its ARG defaults."""
    text = (REPO / "docker/Dockerfile").read_text().replace("\\\n", " ")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    return text, args


def _image() -> str:
    return f"ghcr.io/your-org/geodistill:{_pyproject()['project']['version']}-gpu"


def test_dockerfile_pins_agree_with_pyproject():
    text, args = _dockerfile()
    project = _pyproject()["project"]
    pins = dict(re.findall(r'^"?(torch|torchvision)==([\w.]+)', "\n".join(project["dependencies"]), re.M))
    assert args["TORCH_VERSION"] == pins["torch"] and args["TORCHVISION_VERSION"] == pins["torchvision"]
    assert args["PYTHON_VERSION"] == "3.11" and project["requires-python"] == ">=3.11"
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim", text, re.M)
    assert args["VARIANT"] == "gpu" and "cpu) index=" in text and "gpu) index=" in text
    # the package is installed (not editable) with the cluster extra, at the Ray version clusters name
    assert 'pip install ".[cluster,postgres]" "ray[default,tune,train]==${RAY_VERSION}"' in text
    assert "pip install -e" not in text and "cluster" in project["optional-dependencies"]
    ray_pin = re.search(r"ray\[[\w,]+\]>=([\d.]+)", "\n".join(project["dependencies"])).group(1)
    assert tuple(map(int, args["RAY_VERSION"].split("."))) >= tuple(map(int, ray_pin.split(".")))
    copied = re.findall(r"^COPY (.+) \S+$", text, re.M)
    for source in " ".join(copied).split():
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which the repository lacks"


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_launchers_run_everything_in_the_image_and_install_nothing(path):
    from geodistill.platform.clusters.validate import prepare_launcher

    prepared = prepare_launcher(yaml.safe_load(path.read_text()))  # with Ray's defaults merged in
    assert prepared["docker"]["image"] == _image()
    assert "--volume /mnt/shared:/mnt/shared" in prepared["docker"]["run_options"]
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert prepared[key] == [], f"{key} installs at boot: {prepared[key]}"
    commands = " ".join(
        " ".join(prepared.get(k) or [])
        for k in ("initialization_commands", "head_start_ray_commands", "worker_start_ray_commands")
    )
    assert "pip" not in commands and "py310" not in commands


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kuberay_pods_run_the_image_with_shared_storage_mounted(path):
    doc = yaml.safe_load(path.read_text())
    cluster = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    _, args = _dockerfile()
    assert cluster["rayVersion"] == args["RAY_VERSION"]
    for group in groups:
        pod = group["template"]["spec"]
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"] == _image()
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert claims[mounts["/mnt/shared"]] == "geodistill-shared"
    if doc["kind"] == "RayJob":
        assert "pip" not in doc["spec"].get("runtimeEnvYAML", "")


def _search_commands() -> list[tuple[str, str]]:
    """Every `geodistill search` a cluster example runs: (where, command line)."""
    found = []
    job = yaml.safe_load((REPO / "clusters/kuberay/rayjob.yaml").read_text())
    found.append(("rayjob.yaml", job["spec"]["entrypoint"]))
    # The cloud recipes; the rehearsals on this machine (from "## Rehearsal" on) train on synthetic data.
    readme = (REPO / "clusters/README.md").read_text().split("## Rehearsal")[0].replace("\\\n", " ")
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", readme, re.S))
    found += [("clusters/README.md", line) for line in blocks.splitlines() if "geodistill search " in line]
    script = (REPO / "clusters/submit_search.sh").read_text().replace("\\\n", " ")
    found += [
        ("submit_search.sh", line)
        for line in script.splitlines()
        if "geodistill search " in line and not line.startswith("#")
    ]
    return found


def test_cluster_searches_train_on_real_data_from_shared_storage():
    commands = _search_commands()
    assert [where for where, _ in commands] == ["rayjob.yaml", "clusters/README.md", "submit_search.sh"]
    for where, command in commands:
        words = command.split()
        assert "data=univ" in words, f"{where}: a cluster search without data=univ trains on synthetic data"
        root = next((w for w in words if w.startswith("data.root=")), None)
        assert root and root.split("=", 1)[1].startswith(("/mnt/shared/", '"$DATA_ROOT"')), where
        teacher = words[words.index("--teacher") + 1]
        assert teacher.startswith(("/mnt/shared/", '"$TEACHER"')), f"{where}: teacher {teacher}"
        for flag in ("--storage", "--leaderboard"):
            value = words[words.index(flag) + 1]
            assert value.startswith(("/mnt/shared/", "s3://", '"$')), f"{where}: {flag} {value}"


def test_make_image_without_a_docker_daemon_fails_in_one_line():
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = subprocess.run(
        ["make", "-s", "image"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    ours = [
        line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith(("make: ", "make["))
    ]
    assert proc.returncode != 0
    assert ours == ["make image: no Docker daemon reachable (docker info failed); build where Docker runs"]


@pytest.mark.parametrize("cloud", ["aws.yaml", "gcp.yaml"])
def test_the_rehearsal_file_has_the_cloud_files_node_types(cloud):
    """What `ray up clusters/rehearsal.yaml` scales (tests/reliability/test_cluster_autoscale.py) is what users launch."""
    from geodistill.platform.clusters.validate import prepare_launcher

    def node_types(path: Path) -> dict:
        prepared = prepare_launcher(yaml.safe_load(path.read_text()))
        types = prepared["available_node_types"]
        return {
            name: {"resources": t["resources"], "min_workers": t.get("min_workers", 0)}
            for name, t in types.items()
        }, prepared["head_node_type"]

    assert node_types(REHEARSAL) == node_types(REPO / "clusters" / cloud)
    rehearsal = yaml.safe_load(REHEARSAL.read_text())
    assert rehearsal["provider"]["type"] == "external"
    start = " ".join(rehearsal["head_start_ray_commands"])
    assert "--node-ip-address=127.0.0.1" in start and "--dashboard-host=127.0.0.1" in start
    assert "ray stop" not in start  # it would stop every Ray of this user on the machine
