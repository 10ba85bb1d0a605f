"""`geodistill cluster validate FILE...`: offline checks of cluster-launcher YAMLs and KubeRay manifests."""

from __future__ import annotations

import argparse
import sys

from geodistill.platform.flags import flag


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="check Ray cluster-launcher YAMLs and KubeRay manifests offline",
        description=(
            "validate: launcher YAMLs through the preparation and schema checks `ray up` runs (Ray's "
            "prepare_config/validate_config, the local provider's bootstrap); KubeRay RayCluster/RayJob "
            "manifests against KubeRay's ray.io/v1 CRD schemas; then secure defaults. Exit 2 on any bad file."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser("validate", help="validate one or more cluster files")
    validate.add_argument("files", nargs="+", metavar="FILE", type=flag(kind="text"))
    validate.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from geodistill.errors import ConfigError
    from geodistill.platform.clusters import validate_file

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
