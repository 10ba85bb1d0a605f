"""Regenerate the vendored KubeRay schemas from KubeRay's CRD YAMLs (run by hand, never at import).

    python clusters/kuberay/update_schemas.py \
        PATH/TO/kuberay/ray-operator/config/crd/bases/ray.io_rayclusters.yaml \
        PATH/TO/kuberay/ray-operator/config/crd/bases/ray.io_rayjobs.yaml

The vendored copies come from KubeRay v1.7.0 (commit 59d663aeec13760646da3db9c1cf8cfe883e30b7);
KubeRay is Apache-2.0, its licence is vendored beside them.

Keeps only ``spec.versions[name=v1].schema.openAPIV3Schema`` of each CRD (the data the API
server validates a manifest against) and drops the human-readable ``description`` strings,
which carry no constraint and are most of the CRDs' bytes. Output: ``<kind>.v1.json`` in
``src/geodistill/platform/clusters/kuberay_schemas/``, one compact JSON document each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parents[2] / "src/geodistill/platform/clusters/kuberay_schemas"


def strip_descriptions(schema: Any) -> Any:
    """A copy of an OpenAPI schema node without ``description`` keywords (property names kept)."""
    if isinstance(schema, list):
        return [strip_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            # A mapping of field name -> schema: a field may itself be called "description".
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = strip_descriptions(value)
    return out


def extract(crd_path: Path) -> tuple[str, dict]:
    crd = yaml.safe_load(crd_path.read_text())
    kind = crd["spec"]["names"]["kind"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return kind, strip_descriptions(version["schema"]["openAPIV3Schema"])


def main(paths: list[str]) -> None:
    for path in paths:
        kind, schema = extract(Path(path))
        out = HERE / f"{kind.lower()}.v1.json"
        out.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
