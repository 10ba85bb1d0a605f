"""Offline checks of cluster files: Ray cluster-launcher YAMLs and KubeRay manifests.

A launcher file goes through what ``ray up`` runs before it talks to a cloud: Ray's
``prepare_config`` and ``validate_config``, then the provider's ``bootstrap_config`` where that
runs offline (``local``). These are private Ray APIs on purpose: a Ray upgrade that moves them
fails the tests instead of passing silently. A KubeRay manifest is checked against the vendored
``RayCluster``/``RayJob`` CRD schemas (ray.io/v1) the way strict ``kubectl apply`` treats it.
Both must also keep secure defaults (loopback dashboard, ClusterIP services) and hold no
credentials. What is and is not checked: docs/design.md, "Cluster file checks".
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError, one_line
from geodistill.redact import find_secrets

KUBERAY_KINDS = ("RayCluster", "RayJob")
KUBERAY_API = "ray.io/v1"
KUBERAY_SCHEMAS = Path(__file__).resolve().parent / "kuberay_schemas"
PUBLIC_BIND = re.compile(r"--dashboard-host[= ]+0\.0\.0\.0")
ENV_VALUE = re.compile(r"\$\{?[A-Z_][A-Z0-9_]*\}?")
PORT_FLAG = re.compile(r"--(port|dashboard-port|ray-client-server-port|object-manager-port)[= ]+(\S+)")


def ray_schema_path() -> Path:
    """The cluster-config JSON schema shipped with the installed Ray (what ``validate_config`` reads)."""
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


def prepare_launcher(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config ``ray up`` would hand to the node provider, prepared and validated by Ray itself.

    Runs Ray's ``prepare_config`` and ``validate_config`` and, for the ``local`` provider, its
    ``bootstrap_config``; any failure -> ConfigError with Ray's message on one line.
    """
    import jsonschema
    from ray.autoscaler._private.providers import _NODE_PROVIDERS
    from ray.autoscaler._private.util import prepare_config, validate_config

    provider = (cfg.get("provider") or {}).get("type") if isinstance(cfg.get("provider"), Mapping) else None
    if provider is None:
        raise ConfigError("provider.type is required (Ray cluster schema)")
    if _NODE_PROVIDERS.get(provider) is None:
        known = ", ".join(sorted(k for k, v in _NODE_PROVIDERS.items() if v is not None))
        raise ConfigError(f"provider.type {provider!r} is not a Ray node provider (one of {known})")
    try:
        with _quiet_ray_launcher():
            prepared = prepare_config(copy.deepcopy(dict(cfg)))
            validate_config(prepared)
            if provider == "local":  # the only provider whose bootstrap needs no cloud API
                prepared = _NODE_PROVIDERS[provider](prepared["provider"]).bootstrap_config(prepared)
    except jsonschema.ValidationError as err:
        at = ".".join(str(p) for p in err.absolute_path) or "top level"
        raise ConfigError(f"{at}: {_joined(err.message)} (Ray cluster schema)") from None
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - click aborts, ValueError, KeyError, AssertionError: Ray's verdict
        message = getattr(err, "message", None) or str(err) or type(err).__name__
        if isinstance(err, KeyError):
            message = f"missing key {message}"
        raise ConfigError(f"{_joined(message)} (ray up's config preparation)") from None
    return prepared


@contextlib.contextmanager
def _quiet_ray_launcher() -> Iterator[None]:
    """Swallow what Ray's launcher prints while preparing (its abort message becomes our one line)."""
    loggers = [logging.getLogger(name) for name in ("ray.autoscaler", "ray")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _joined(text: str) -> str:
    """Ray's and jsonschema's multi-line verdicts as one line (every line matters, so join, not cut)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))  # Ray colours its abort messages
    return " ".join(text.split())


def _validate_launcher(cfg: Mapping[str, Any]) -> str:
    prepared = prepare_launcher(cfg)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for i, command in enumerate(prepared.get(key) or []):
            _check_command(f"{key}[{i}]", command)
    return f"launcher:{prepared['provider']['type']}"


def _check_command(where: str, command: str) -> None:
    if PUBLIC_BIND.search(command):
        raise ConfigError(
            f"{where} binds the dashboard/job port to 0.0.0.0; use --dashboard-host=127.0.0.1 and `ray dashboard`"
        )
    for flag, value in PORT_FLAG.findall(command):
        if ENV_VALUE.fullmatch(
            value
        ):  # set when the cluster is launched (clusters/rehearsal.yaml: free ports)
            continue
        if not value.isdigit() or not 1024 <= int(value) <= 65535:
            raise ConfigError(f"{where}: --{flag} must be a port in 1024..65535; got {value!r}")


@functools.cache
def kuberay_schema(kind: str) -> dict[str, Any]:
    """The vendored OpenAPI schema of KubeRay's ``kind`` CRD (ray.io/v1), closed like strict kubectl."""
    raw = json.loads((KUBERAY_SCHEMAS / f"{kind.lower()}.v1.json").read_text())
    return _close_objects(raw)


def _close_objects(schema: Any) -> Any:
    """Unknown fields are errors unless the schema says ``x-kubernetes-preserve-unknown-fields``.

    The API server prunes unknown fields silently, but ``kubectl apply`` (strict field
    validation, the default since Kubernetes 1.25) rejects them: a typo'd key is an error.
    """
    if isinstance(schema, list):
        return [_close_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _close_objects(sub) for name, sub in value.items()}
        else:
            out[key] = _close_objects(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _validate_kuberay(doc: Mapping[str, Any]) -> str:
    import jsonschema

    if doc.get("apiVersion") != KUBERAY_API:
        raise ConfigError(f"apiVersion must be {KUBERAY_API}; got {doc.get('apiVersion')!r}")
    kind = doc.get("kind")
    if kind not in KUBERAY_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KUBERAY_KINDS)}; got {kind!r}")
    if not (doc.get("metadata") or {}).get("name"):
        raise ConfigError("metadata.name is required")
    validator = jsonschema.Draft7Validator(kuberay_schema(kind))
    errors = sorted(validator.iter_errors(dict(doc)), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        err = errors[0]
        at = ".".join(str(p) for p in err.absolute_path) or "top level"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{at}: {_joined(err.message)} (KubeRay {kind} CRD schema){more}")
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
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", group.get("replicas", 0))
        replicas = group.get("replicas", lo)
        if not lo <= replicas <= hi:
            raise ConfigError(
                f"{at}: need minReplicas <= replicas <= maxReplicas; got {lo}, {replicas}, {hi}"
            )
        _check_pod_template(group, at)


def _check_pod_template(group: Mapping[str, Any], where: str) -> None:
    containers = (((group.get("template") or {}).get("spec") or {}).get("containers")) or []
    if not containers or not all(isinstance(c, Mapping) and c.get("image") for c in containers):
        raise ConfigError(f"{where}.template.spec.containers must list containers with an image")
