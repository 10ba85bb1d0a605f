"""A small stage-1 teacher for a search's ``--smoke-test`` (no teacher checkpoint needed)."""

from __future__ import annotations

from pathlib import Path

from geodistill.platform.search.plan import SearchPlan
from geodistill.train.config import RunConfig


def train_teacher_for(plan: SearchPlan, out_dir: str | Path) -> Path:
    """Train a small stage-1 teacher on the data the plan's students see (for --smoke-test).

    Same data settings, backbone and embedding width as the students' first configuration,
    stage teacher, one epoch, in this process. Returns its last checkpoint directory (reused
    when present).
    """
    from geodistill.eval import fit_evaluated
    from geodistill.train.context import InProcessContext, latest_checkpoint_in

    run_dir = Path(out_dir)
    found = latest_checkpoint_in(run_dir / "checkpoints")
    if found is not None:
        return found
    student = plan.first_config().to_dict()
    student.update(stage="teacher", run_name="teacher")
    student["distill"]["teacher_checkpoint"] = None
    cfg = RunConfig.from_dict(student)  # checked as a teacher
    cfg.scaling.num_workers, cfg.train.epochs = 0, 1
    fit_evaluated(cfg, context=InProcessContext(run_dir))
    found = latest_checkpoint_in(run_dir / "checkpoints")
    if found is None:
        raise RuntimeError(f"teacher training wrote no checkpoint under {run_dir}")
    return found
