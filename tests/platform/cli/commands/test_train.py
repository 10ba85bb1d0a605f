"""`geodistill train`'s module stays clear of Ray Tune (a training run is no search)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]


def test_the_train_command_imports_no_ray_tune():
    """Its leaderboard row comes from leaderboard.rows and its cost from models.cost, not the search."""
    code = (
        "import sys\n"
        "import geodistill.platform.cli.commands.train\n"
        "import geodistill.leaderboard.rows, geodistill.models.cost, geodistill.platform.tracking\n"
        "print(sorted(m for m in sys.modules if m == 'ray.tune' or m.startswith('ray.tune.')))\n"
        "print('geodistill.platform.search.trial' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.splitlines() == ["[]", "False"], out.stdout
