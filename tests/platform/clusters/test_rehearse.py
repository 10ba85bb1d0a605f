"""`geodistill cluster rehearse`'s printed submit lines work without an activated venv."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from geodistill.platform.clusters.rehearse import RehearsalCluster, usage


def test_the_printed_submit_line_names_this_pythons_ray():
    """Issue 29: the printed `ray` was not on PATH unless .venv was activated."""
    cluster = RehearsalCluster(
        temp_dir="/tmp/gdrehX/t", folder="/tmp/gdrehX", token_path="/tmp/gdrehX/auth_token", gcs_address="127.0.0.1:1",
        dashboard_url="http://127.0.0.1:2", nodes={"head": {"node_id": "f" * 56}},
    )  # fmt: skip
    (submit,) = [line.strip() for line in usage(cluster).splitlines() if " job submit " in line]
    ray = shlex.split(submit)[0]
    assert ray == str(Path(sys.executable).parent / "ray")
    assert os.access(ray, os.X_OK)  # the one installed with this Python's Ray
    assert "--address http://127.0.0.1:2" in submit and "python -m geodistill search" in submit
