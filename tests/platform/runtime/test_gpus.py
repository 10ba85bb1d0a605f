"""GPU placement of search trials, on a real local Ray head that declares 4 (fake) GPUs.

What each trial (and each Ray Train worker of a multi-worker trial) is granted by Ray, and
which ``CUDA_VISIBLE_DEVICES`` it sees: 0-GPU trials see none (Ray 2.60 would leave them the
node's ``0,1,2,3``), fractional and whole-GPU trials see exactly the GPU Ray granted, and the
workers of a multi-worker trial each hold their own GPU. The objective is trivial and records
what it saw in a file; the machine needs no GPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from trivial_search import search, search_dirs, trivial_space

from geodistill.errors import ConfigError
from geodistill.platform.runtime.gpus import trial_resources, with_gpus_per_trial, worker_resources
from geodistill.train.config import RunConfig

NODE_GPUS = "0,1,2,3"


def _cfg(**scaling) -> RunConfig:
    return RunConfig.from_dict({"scaling": scaling})


def test_what_a_trial_and_its_workers_reserve():
    # Single-worker trials reserve their GPUs themselves; default from use_gpu, override wins.
    assert trial_resources(_cfg(num_workers=0), cpus=1, gpus_per_trial=None) == {"CPU": 1, "GPU": 0}
    assert trial_resources(_cfg(num_workers=0, use_gpu=True), cpus=2, gpus_per_trial=None) == {
        "CPU": 2,
        "GPU": 1,
    }
    assert trial_resources(_cfg(num_workers=0, use_gpu=True), cpus=1, gpus_per_trial=0) == {
        "CPU": 1,
        "GPU": 0,
    }
    assert trial_resources(_cfg(num_workers=0), cpus=1, gpus_per_trial=0.25) == {"CPU": 1, "GPU": 0.25}
    # Multi-worker trials reserve a token; each worker reserves its share.
    multi = _cfg(num_workers=4, use_gpu=False, cpus_per_worker=2)
    assert trial_resources(multi, cpus=1, gpus_per_trial=2) == {"CPU": 0, "memory": 2**20}
    assert worker_resources(with_gpus_per_trial(multi, 2).scaling) == {"CPU": 2, "GPU": 0.5}
    assert worker_resources(multi.scaling) == {"CPU": 2}
    assert worker_resources(_cfg(num_workers=2, use_gpu=True).scaling) == {"CPU": 1, "GPU": 1.0}
    assert multi.scaling.gpus_per_worker is None  # with_gpus_per_trial copies


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_bad_gpus_per_trial_is_refused_in_one_line_before_ray(bad, tmp_path):
    with pytest.raises(ConfigError, match="--gpus-per-trial"):
        search(_space(), experiment="bad", gpus_per_trial=bad, storage=str(tmp_path), verbose=0)


def _space(**fixed) -> object:
    return trivial_space(1, name="gpus", **fixed)


@pytest.fixture(scope="module")
def fake_gpu_head():
    """A local head on 127.0.0.1 declaring 4 GPUs, whose processes inherit CUDA_VISIBLE_DEVICES=0,1,2,3
    (what a real 4-GPU node's raylet passes on to every worker it starts)."""
    import ray

    from geodistill.platform.runtime.ray_local import init_ray

    assert not ray.is_initialized()
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = NODE_GPUS
    try:
        init_ray(num_cpus=4, num_gpus=4)
        assert ray.cluster_resources()["GPU"] == 4
        yield ray
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def _search(tmp_path: Path, name: str, space, *, samples: int, gpus_per_trial=None) -> list[dict]:
    """Run a search whose objective records what each process saw; return the records."""
    seen = tmp_path / "seen"
    seen.mkdir(exist_ok=True)

    def objective(cfg, *, context):
        import os as os_
        import time

        import ray as ray_

        record = {
            "trial": cfg.run_name,
            "rank": context.rank,
            "gpu_ids": [str(i) for i in ray_.get_gpu_ids()],
            "accelerator_ids": ray_.get_runtime_context().get_accelerator_ids().get("GPU", []),
            "visible": os_.environ.get("CUDA_VISIBLE_DEVICES"),
            "pid": os_.getpid(),
        }
        (seen / f"{name}-{cfg.run_name}-{context.rank}.json").write_text(json.dumps(record))
        time.sleep(1.0)  # overlap with the concurrent trial, so both hold their GPUs at once
        metrics = {"epoch": 1, "d2s_recall1": 1.0}
        context.report(metrics)
        # What fit returns: a multi-worker trial reads rank 0's result (in process it is unused).
        from geodistill.train.loop import TrainResult

        return TrainResult(
            epochs_done=1, metrics=metrics, checkpoint=None, stopped_early=False, skipped_media=0
        )

    result = search(
        space,
        experiment=name,
        num_samples=samples,
        sampler="random",
        **search_dirs(tmp_path),
        max_concurrent=2,
        early_stopping=False,
        gpus_per_trial=gpus_per_trial,
        objective=objective,
    )
    assert result.rows.height == samples and set(result.rows["status"]) == {"ok"}, result.rows.to_dicts()
    return [json.loads(p.read_text()) for p in sorted(seen.glob(f"{name}-*.json"))]


@pytest.mark.slow
def test_trials_see_exactly_the_gpus_ray_granted(fake_gpu_head, tmp_path):
    # 0-GPU trials: nothing granted and nothing visible (Ray alone would leave them "0,1,2,3").
    for record in _search(tmp_path, "cpu", _space(), samples=2):
        assert record["gpu_ids"] == [] and record["visible"] == "", record

    # scaling.use_gpu in-process: the trial holds one whole GPU, distinct from the other trial's.
    whole = _search(
        tmp_path, "whole", _space(**{"scaling.num_workers": 0, "scaling.use_gpu": True}), samples=2
    )
    assert len(whole) == 2
    for record in whole:
        assert len(record["gpu_ids"]) == 1 and record["visible"] == record["gpu_ids"][0], record
    assert whole[0]["gpu_ids"] != whole[1]["gpu_ids"]

    # --gpus-per-trial 0.5 on a CPU config: half a GPU each, and only that GPU visible.
    for record in _search(tmp_path, "half", _space(), samples=2, gpus_per_trial=0.5):
        assert len(record["gpu_ids"]) == 1 and record["visible"] == record["gpu_ids"][0], record

    # --gpus-per-trial 0 overrides scaling.use_gpu: the trial runs without a GPU.
    for record in _search(
        tmp_path,
        "none",
        _space(**{"scaling.num_workers": 0, "scaling.use_gpu": True}),
        samples=1,
        gpus_per_trial=0,
    ):
        assert record["gpu_ids"] == [] and record["visible"] == "", record


@pytest.mark.slow
def test_multi_worker_trials_reserve_a_gpu_per_worker(fake_gpu_head, tmp_path):
    space = _space(**{"scaling.num_workers": 2, "scaling.use_gpu": True})
    records = _search(tmp_path, "multi", space, samples=1)
    assert sorted(r["rank"] for r in records) == [0, 1]
    ids = [r["gpu_ids"] for r in records]
    assert all(len(i) == 1 for i in ids) and ids[0] != ids[1], records
    union = ",".join(sorted(i[0] for i in ids))
    # Ray Train shows each worker every GPU its node's workers hold (the local rank picks one).
    assert all(sorted(r["visible"].split(",")) == union.split(",") for r in records), records
    assert len({r["pid"] for r in records}) == 2

    # A CPU-only config's workers reserve no GPU and see none (Ray would leave them 0,1,2,3).
    cpu = _search(tmp_path, "multi-cpu", _space(**{"scaling.num_workers": 2}), samples=1)
    assert all(r["gpu_ids"] == [] and r["visible"] == "" for r in cpu), cpu
