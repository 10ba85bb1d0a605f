"""Cluster files: every shipped YAML validates (Ray's own schema + our checks); malformed ones fail in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geodistill.errors import ConfigError
from geodistill.platform.cli import main
from geodistill.platform.clusters import ray_schema_path, validate_document, validate_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "clusters").rglob("*.yaml"))


def test_ships_launchers_for_aws_gcp_local_and_kuberay_manifests():
    kinds = {validate_file(p) for p in SHIPPED}
    assert kinds == {"launcher:aws", "launcher:gcp", "launcher:local", "kuberay:RayCluster", "kuberay:RayJob"}
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


def test_cli_reports_each_bad_file_in_one_line_and_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster_name: x\nprovider: {type: aws\n")
    not_a_map = tmp_path / "list.yaml"
    not_a_map.write_text("- a\n- b\n")
    rc = main(["cluster", "validate", str(REPO / "clusters/aws.yaml"), str(broken), str(not_a_map)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "ok  " in out and "aws.yaml" in out
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"geodistill cluster: error: {broken}: malformed YAML (line ")
    assert lines[1] == f"geodistill cluster: error: {not_a_map}: expected a YAML mapping at the top level"


def test_console_script_validates_every_shipped_file():
    proc = subprocess.run(
        [sys.executable, "-m", "geodistill", "cluster", "validate", *map(str, SHIPPED)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok  ") == len(SHIPPED)
