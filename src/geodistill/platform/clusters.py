"""Offline checks of cluster files: Ray cluster-launcher YAMLs and KubeRay manifests.

Launcher files are validated against the JSON schema that ships inside Ray
(``ray/autoscaler/ray-schema.json``, the file ``ray up`` itself validates against through
the private ``ray.autoscaler._private.util.validate_config``; we read the schema file directly
because ``validate_config`` also wants the defaults ``ray up`` fills in first). On top of the
schema: head/worker node-type consistency, worker counts, and secure defaults (the dashboard
and job port bound to loopback, no credentials in the file). KubeRay manifests (no schema
ships with Ray) get structural checks of the ray.io/v1 ``RayCluster`` / ``RayJob`` fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError, one_line
from geodistill.redact import find_secrets

PROVIDERS = ("aws", "gcp", "azure", "local", "vsphere", "aliyun", "kuberay", "external")
KUBERAY_KINDS = ("RayCluster", "RayJob")
KUBERAY_API = "ray.io/v1"
PUBLIC_BIND = re.compile(r"--dashboard-host[= ]+0\.0\.0\.0")
PORT_FLAG = re.compile(r"--(port|dashboard-port|ray-client-server-port|object-manager-port)[= ]+(\S+)")


def ray_schema_path() -> Path:
    """The cluster-config JSON schema shipped with the installed Ray."""
    import ray.autoscaler

    return Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def load_yaml(path: str | Path) -> Any:
    """Parse one YAML document; a missing file or malformed YAML -> ConfigError (one line)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or one_line(err)
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None


def validate_file(path: str | Path) -> str:
    """Validate a launcher YAML or KubeRay manifest; return its kind; raise ConfigError if bad."""
    data = load_yaml(path)
    try:
        return validate_document(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def validate_document(data: Any) -> str:
    """``"launcher:<provider>"`` or ``"kuberay:<kind>"`` for a valid document, else ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError("expected a YAML mapping at the top level")
    # A committed file must hold no credential (geodistill.redact: the leaderboard's rule too).
    secrets = find_secrets(data)
    if secrets:
        raise ConfigError(f"{secrets[0]} holds a credential; keep secrets out of cluster files")
    if "apiVersion" in data or "kind" in data:
        return _validate_kuberay(data)
    return _validate_launcher(data)


def _validate_launcher(cfg: Mapping[str, Any]) -> str:
    import jsonschema

    schema = json.loads(ray_schema_path().read_text())
    try:
        jsonschema.validate(dict(cfg), schema)
    except jsonschema.ValidationError as err:
        at = ".".join(str(p) for p in err.absolute_path) or "top level"
        raise ConfigError(f"{at}: {err.message} (Ray cluster schema)") from None
    provider = cfg["provider"].get("type")
    if provider not in PROVIDERS:
        raise ConfigError(f"provider.type must be one of {', '.join(PROVIDERS)}; got {provider!r}")
    if "max_workers" not in cfg:
        raise ConfigError("max_workers is required (the autoscaler's upper bound)")
    max_workers = cfg["max_workers"]
    if max_workers < 0:
        raise ConfigError(f"max_workers must be >= 0; got {max_workers}")
    types = cfg.get("available_node_types") or {}
    if not types:
        raise ConfigError("available_node_types must list the head and worker node types")
    head = cfg.get("head_node_type")
    if head not in types:
        raise ConfigError(f"head_node_type {head!r} is not one of available_node_types ({', '.join(types)})")
    min_total = 0
    for name, spec in types.items():
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers", max_workers)
        if lo > hi:
            raise ConfigError(f"available_node_types.{name}: min_workers ({lo}) > max_workers ({hi})")
        if hi > max_workers:
            raise ConfigError(
                f"available_node_types.{name}.max_workers ({hi}) exceeds max_workers ({max_workers})"
            )
        if name != head:
            min_total += lo
    if min_total > max_workers:
        raise ConfigError(f"worker min_workers add up to {min_total}, more than max_workers ({max_workers})")
    if provider == "local":
        if not cfg["provider"].get("head_ip"):
            raise ConfigError("provider.head_ip is required by the local provider")
        if not isinstance(cfg["provider"].get("worker_ips"), list):
            raise ConfigError("provider.worker_ips (a list) is required by the local provider")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for i, command in enumerate(cfg.get(key) or []):
            _check_command(f"{key}[{i}]", command)
    return f"launcher:{provider}"


def _check_command(where: str, command: str) -> None:
    if PUBLIC_BIND.search(command):
        raise ConfigError(
            f"{where} binds the dashboard/job port to 0.0.0.0; use --dashboard-host=127.0.0.1 and `ray dashboard`"
        )
    for flag, value in PORT_FLAG.findall(command):
        if not value.isdigit() or not 1024 <= int(value) <= 65535:
            raise ConfigError(f"{where}: --{flag} must be a port in 1024..65535; got {value!r}")


def _validate_kuberay(doc: Mapping[str, Any]) -> str:
    if doc.get("apiVersion") != KUBERAY_API:
        raise ConfigError(f"apiVersion must be {KUBERAY_API}; got {doc.get('apiVersion')!r}")
    kind = doc.get("kind")
    if kind not in KUBERAY_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KUBERAY_KINDS)}; got {kind!r}")
    if not (doc.get("metadata") or {}).get("name"):
        raise ConfigError("metadata.name is required")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise ConfigError("spec must be a mapping")
    if kind == "RayJob":
        entrypoint = spec.get("entrypoint")
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ConfigError("spec.entrypoint must be the job's command line")
        cluster = spec.get("rayClusterSpec")
        if cluster is None and not spec.get("clusterSelector"):
            raise ConfigError("spec.rayClusterSpec (or spec.clusterSelector) is required")
        if cluster is not None:
            _check_ray_cluster_spec(cluster, "spec.rayClusterSpec")
    else:
        _check_ray_cluster_spec(spec, "spec")
    return f"kuberay:{kind}"


def _check_ray_cluster_spec(spec: Any, where: str) -> None:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    head = spec.get("headGroupSpec")
    if not isinstance(head, Mapping):
        raise ConfigError(f"{where}.headGroupSpec is required")
    _check_pod_template(head, f"{where}.headGroupSpec")
    service = head.get("serviceType", "ClusterIP")
    if service != "ClusterIP":
        raise ConfigError(
            f"{where}.headGroupSpec.serviceType {service!r} exposes the dashboard/job port; use ClusterIP "
            "and kubectl port-forward"
        )
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        at = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(group, Mapping) or not group.get("groupName"):
            raise ConfigError(f"{at}.groupName is required")
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", group.get("replicas", 0))
        replicas = group.get("replicas", lo)
        for key, value in (("minReplicas", lo), ("maxReplicas", hi), ("replicas", replicas)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{at}.{key} must be an integer >= 0; got {value!r}")
        if not lo <= replicas <= hi:
            raise ConfigError(
                f"{at}: need minReplicas <= replicas <= maxReplicas; got {lo}, {replicas}, {hi}"
            )
        _check_pod_template(group, at)


def _check_pod_template(group: Mapping[str, Any], where: str) -> None:
    if not isinstance(group.get("rayStartParams", {}), Mapping):
        raise ConfigError(f"{where}.rayStartParams must be a mapping")
    containers = (((group.get("template") or {}).get("spec") or {}).get("containers")) or []
    if not containers or not all(isinstance(c, Mapping) and c.get("image") for c in containers):
        raise ConfigError(f"{where}.template.spec.containers must list containers with an image")
