"""`geodistill cluster validate FILE...` (offline checks of cluster YAMLs and KubeRay manifests) and
`geodistill cluster rehearse` (a head and worker nodes on 127.0.0.1, until Ctrl-C)."""

from __future__ import annotations

import argparse
import sys

from geodistill.platform.cli.flags import flag
from geodistill.platform.clusters.rehearse import MAX_WORKERS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="validate: check cluster-launcher YAMLs and KubeRay manifests offline; rehearse: a multi-node Ray cluster on this machine",
        description=(
            "validate: launcher YAMLs through the preparation and schema checks `ray up` runs (Ray's "
            "prepare_config/validate_config, the local provider's bootstrap); KubeRay RayCluster/RayJob "
            "manifests against KubeRay's ray.io/v1 CRD schemas; then secure defaults. Exit 2 on any bad file."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser("validate", help="validate one or more cluster files")
    validate.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        type=flag(kind="text"),
        help="Ray cluster-launcher YAMLs (clusters/*.yaml) or KubeRay RayCluster/RayJob manifests",
    )
    validate.set_defaults(func=_validate)
    rehearse = actions.add_parser(
        "rehearse",
        help="run a rehearsal Ray cluster on this machine (head + worker nodes, 127.0.0.1, token auth)",
        description=(
            "Start a real Ray cluster on loopback: a head (no CPUs, dashboard on 127.0.0.1 for `ray job "
            "submit`) and WORKERS nodes, each with its own raylet, CPUs and a custom resource node_a, "
            "node_b, ...; token auth on. Prints the addresses and how to submit; Ctrl-C tears it down."
        ),
    )
    rehearse.add_argument(
        "--workers", type=flag(int, ge=1, le=MAX_WORKERS), default=2, help="worker nodes (default 2)"
    )
    rehearse.add_argument(
        "--cpus-per-node", type=flag(int, ge=1, le=64), default=1, help="CPUs of each worker node (default 1)"
    )
    rehearse.add_argument(
        "--manifest", type=flag(kind="out_file"), help="also write the cluster's JSON manifest here"
    )
    rehearse.set_defaults(func=_rehearse)


def _validate(args: argparse.Namespace) -> int:
    from geodistill.errors import ConfigError
    from geodistill.platform.clusters.validate import validate_file

    failures = 0
    for path in args.files:
        try:
            kind = validate_file(path)
        except ConfigError as err:
            failures += 1
            print(f"geodistill cluster: error: {err}", file=sys.stderr)
            continue
        print(f"ok  {path}  ({kind})")
    return 2 if failures else 0


def _rehearse(args: argparse.Namespace) -> int:
    from geodistill.platform.clusters.rehearse import run_rehearsal

    return run_rehearsal(workers=args.workers, cpus_per_node=args.cpus_per_node, manifest=args.manifest)
