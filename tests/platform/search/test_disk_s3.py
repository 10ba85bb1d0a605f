"""``--keep-checkpoints front`` on URI storage, against moto's S3 server on 127.0.0.1: the off-front
trials' weights leave the bucket and their rows say so; the front's stay and open; a store that
fails part-way leaves every row naming a checkpoint that is still there."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from services import free_port
from trivial_search import search, trivial_space, two_cost_checkpointing

from geodistill.leaderboard.pareto import pareto_rows


def _keys(s3, key: str) -> list[str]:
    """The objects under ``key`` in the bucket, relative to it."""
    import pyarrow.fs as pafs

    root = f"{s3.bucket}/{key}"
    infos = s3.filesystem().get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File)


@pytest.mark.slow  # a 4-trial search with Tune's state on moto: ~30 s
def test_a_search_on_s3_keeps_only_the_fronts_checkpoints_in_the_bucket(s3, ray_local, tmp_path, monkeypatch):
    from geodistill.platform.runtime.remote import open_uri

    monkeypatch.setenv("GEODISTILL_OPTUNA_DIR", str(tmp_path / "optuna"))  # the study off the store
    monkeypatch.chdir(tmp_path)  # Ray's scheme-less paths (geodistill/...) would land here
    result = search(
        trivial_space(2),
        experiment="front-s3",
        num_samples=4,
        sampler="random",
        seed=3,
        keep_checkpoints="front",
        early_stopping=False,
        objective=two_cost_checkpointing,
        storage=s3.uri("tune"),
        leaderboard=str(tmp_path / "lb"),
        verbose=0,
    )
    rows = result.rows
    assert rows.height == 4 and (rows["status"] == "ok").all(), rows
    front = set(pareto_rows(rows)["trial_id"])
    assert set(result.pareto["trial_id"]) == front and 1 <= len(front) < 4, rows
    stored = _keys(s3, "tune/front-s3")
    for row in rows.iter_rows(named=True):
        weights = [k for k in stored if k.startswith(f"{row['run_id']}/checkpoint_")]
        if row["trial_id"] in front:  # kept, named by a URI that opens
            assert row["checkpoint_uri"] == s3.uri(f"tune/front-s3/{weights[0].rpartition('/')[0]}")
            fs, path = open_uri(row["checkpoint_uri"])
            with fs.open_input_stream(f"{path}/model.safetensors") as stream:
                assert stream.read() == b"w" * 1000
        else:  # gone from the bucket, and the row says so
            assert row["checkpoint_uri"] is None and weights == [], (row, weights)
        assert f"{row['run_id']}/result.json" in stored  # results and logs stay; only checkpoints go
    assert not (tmp_path / s3.bucket).exists()  # nothing was read as a local path


def test_a_store_that_fails_part_way_leaves_each_unpruned_row_naming_its_checkpoint(s3, tmp_path, capsys):
    """Off the front: the first trial is pruned; the second's store is unreachable, so pruning
    stops there with one line, and its row (and the third's, never reached) keeps its URI."""
    import polars as pl
    import pyarrow.fs as pafs

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.rows import trial_row
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search.disk import prune_off_front

    fs, exp = s3.filesystem(), f"{s3.bucket}/tune/part"
    gone = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{free_port()}", scheme="http", region="us-east-1", connect_timeout=1
    )  # nothing listens there
    cfg = compose_run_config(["preset=smoke", f"output_dir={tmp_path}"])
    trials, rows = [], []
    for trial_id, recall, store in (
        ("front", 90.0, fs),
        ("off", 10.0, fs),
        ("lost", 8.0, gone),
        ("later", 5.0, fs),
    ):
        with fs.open_output_stream(f"{exp}/trial_{trial_id}/checkpoint_000001/model.safetensors") as out:
            out.write(b"w" * 1000)
        trials.append(
            SimpleNamespace(
                trial_id=trial_id,
                path=f"{exp}/trial_{trial_id}",
                storage=SimpleNamespace(storage_filesystem=store),
                checkpoint=None,
            )
        )
        uri = s3.uri(f"tune/part/trial_{trial_id}/checkpoint_000001")
        result = {"epoch": 2, "d2s_recall1": recall, "gflops": 1.0}
        rows.append(trial_row(experiment="part", trial_id=trial_id, cfg=cfg, result=result, status="ok",
                              checkpoint=uri))  # fmt: skip
    lb = tmp_path / "lb"
    Leaderboard(lb).write(rows)
    order = {t.trial_id: n for n, t in enumerate(trials)}
    frame = Leaderboard(lb).read("part").sort(pl.col("trial_id").replace_strict(order))
    removed = prune_off_front(trials, frame, frame.filter(pl.col("trial_id") == "front"), str(lb))
    assert removed == [f"{exp}/trial_off/checkpoint_000001"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot remove off-front checkpoints under {exp}/trial_lost" in err, err
    named = dict(Leaderboard(lb).read("part").select("trial_id", "checkpoint_uri").iter_rows())
    assert named == {
        t: None if t == "off" else s3.uri(f"tune/part/trial_{t}/checkpoint_000001") for t in order
    }
    assert _keys(s3, "tune/part") == [
        f"trial_{t}/checkpoint_000001/model.safetensors" for t in ("front", "later", "lost")
    ]


def test_settling_on_a_store_that_fails_says_one_line_and_settles_the_rest(s3, tmp_path, capsys):
    """An unreachable store when the search ends: one line, no traceback; the trials on the store
    that answers, before it, lose their training state as usual, and local trials still settle."""
    import pyarrow.fs as pafs

    from geodistill.platform.search.disk import settle_ended

    fs, exp = s3.filesystem(), f"{s3.bucket}/tune/settle"
    gone = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{free_port()}", scheme="http", region="us-east-1", connect_timeout=1
    )  # nothing listens there
    with fs.open_output_stream(f"{exp}/trial_ok/checkpoint_000001/train_state.pt") as out:
        out.write(b"s" * 10)
    local = tmp_path / "trial_local" / "checkpoint_000001"
    local.mkdir(parents=True)
    (local / "train_state.pt").write_bytes(b"s")

    def trial(trial_id: str, store, path: str) -> SimpleNamespace:
        return SimpleNamespace(trial_id=trial_id, path=path, storage=SimpleNamespace(storage_filesystem=store),
                               checkpoint=None)  # fmt: skip

    settle_ended([
        trial("ok", fs, f"{exp}/trial_ok"),
        trial("lost", gone, f"{exp}/trial_lost"),
        trial("local", pafs.LocalFileSystem(), str(tmp_path / "trial_local")),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and f"cannot drop ended trials' train_state.pt and stray checkpoints under {exp}/trial_lost" in err
    ), err
    assert "Traceback" not in err
    assert _keys(s3, "tune/settle") == []  # the answering store's trial lost its state
    assert not (local / "train_state.pt").exists()
