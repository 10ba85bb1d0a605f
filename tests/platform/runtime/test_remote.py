"""Teacher checkpoints and the leaderboard on ``s3://`` URIs, against moto's S3 server on 127.0.0.1.

The server is real (HTTP on loopback, ``services.s3_server``); pyarrow reaches it through the
URI's ``endpoint_override``/``scheme`` options, as it would reach MinIO or Ceph.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import free_port

from geodistill.errors import CheckpointError, UserError
from geodistill.leaderboard import Leaderboard, make_row
from geodistill.platform.cli import main
from geodistill.platform.runtime.remote import fetch_checkpoint, join_uri, locate_checkpoint
from geodistill.train.checkpoint import file_sha256


def _upload(s3, local: Path, key: str, *, skip: tuple[str, ...] = ()) -> None:
    fs = s3.filesystem()
    for path in sorted(local.rglob("*")):
        if path.is_file() and path.name not in skip:
            rel = path.relative_to(local).as_posix()
            with fs.open_output_stream(f"{s3.bucket}/{key}/{rel}") as out:
                out.write(path.read_bytes())


def _fake_checkpoint(folder: Path, payload: bytes) -> str:
    """A checkpoint directory's files (fetching never loads them): weights, then meta with their sha."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload)
    sha = file_sha256(folder / "model.safetensors")
    (folder / "train_state.pt").write_bytes(b"optimizer state a teacher does not need")
    (folder / "meta.json").write_text(json.dumps({"format": "geodistill", "model_sha256": sha}))
    return sha


def test_join_uri_keeps_the_query_at_the_end():
    assert join_uri("s3://b/x?endpoint_override=h:1&scheme=http", "exp", "t") == (
        "s3://b/x/exp/t?endpoint_override=h:1&scheme=http"
    )
    assert join_uri("/local/dir/", "exp") == "/local/dir/exp"


def test_uri_on_gives_a_path_on_a_store_back_its_scheme_and_query():
    from geodistill.platform.runtime.remote import uri_on

    storage = "s3://b/tune?endpoint_override=h:1&scheme=http"
    assert uri_on(storage, "b/tune/exp/trainers/t/epoch_0003") == (
        "s3://b/tune/exp/trainers/t/epoch_0003?endpoint_override=h:1&scheme=http"
    )
    assert uri_on(storage, "b/tune") == storage
    assert uri_on("s3://b/tune", "other/key") == "s3://other/key"  # not under it: scheme only
    assert uri_on("gs://b/x?q=1", "c/y") == "gs://c/y?q=1"
    assert uri_on("/local/tune", "/local/tune/exp") == "/local/tune/exp"  # local: the path itself


def test_uri_on_keeps_the_host_of_a_store_whose_paths_are_host_relative():
    """pyarrow's path on S3 starts with the bucket (the URI's authority); on HDFS it is the URI's
    absolute path (Arrow's FileSystemFromUri: ``uri.path()``), so the namenode comes from storage."""
    from urllib.parse import urlsplit

    from geodistill.platform.runtime.remote import open_uri, store_path, uri_on

    s3 = "s3://b/tune?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"
    for path in ("b/tune/exp/t/epoch_0002", "other/key"):  # what uri_on gives back opens at path
        assert open_uri(uri_on(s3, path))[1] == path
    keyed = "s3://AK:SK@b/tune?region=us-east-1"  # credentials in the authority: the bucket follows them
    assert store_path(keyed) == open_uri(keyed)[1] == "b/tune"
    assert uri_on(keyed, "b/tune/e") == "s3://AK:SK@b/tune/e?region=us-east-1"
    hdfs = "hdfs://namenode:8020/user/tune?user=me"
    assert uri_on(hdfs, "/user/tune/exp/trainers/t/epoch_0003") == (
        "hdfs://namenode:8020/user/tune/exp/trainers/t/epoch_0003?user=me"
    )
    assert uri_on(hdfs, "/user/tune") == hdfs
    assert uri_on(hdfs, "/elsewhere/x") == "hdfs://namenode:8020/elsewhere/x?user=me"  # not under it
    assert uri_on("viewfs://cluster/a", "/b/c") == "viewfs://cluster/b/c"
    assert uri_on("hdfs:///user/tune", "/other") == "hdfs:///other"  # the default namenode stays so
    for path in ("/user/tune/exp/e", "/elsewhere/x"):
        parts = urlsplit(uri_on(hdfs, path))
        assert (parts.netloc, parts.path) == ("namenode:8020", path)  # pyarrow's path back
        assert store_path(uri_on(hdfs, path)) == path  # (opening hdfs needs a JVM)
    assert store_path(hdfs) == "/user/tune" and store_path("hdfs://namenode:8020") == "/"


def test_uri_on_gives_an_azure_path_back_its_account_and_container():
    """pyarrow's path on abfs is <container>/<path>: the account (and, on the dfs endpoint, the
    container's place before the @) comes back from storage. Opening an abfs URI reaches no
    network, so pyarrow itself checks each URI opens at the path it was made from."""
    from geodistill.platform.runtime.remote import open_uri, store_path, uri_on

    dfs = "abfss://c@acct.dfs.core.windows.net/tune?credential_kind=anonymous"
    assert uri_on(dfs, "c/tune/exp/trainers/t/epoch_0003") == (
        "abfss://c@acct.dfs.core.windows.net/tune/exp/trainers/t/epoch_0003?credential_kind=anonymous"
    )
    assert uri_on(dfs, "c/tune") == dfs
    assert uri_on(dfs, "d/x/y") == "abfss://d@acct.dfs.core.windows.net/x/y?credential_kind=anonymous"
    blob = "abfs://acct.blob.core.windows.net/c/tune"  # the container is the path's first segment
    assert uri_on(blob, "c/tune/exp") == "abfs://acct.blob.core.windows.net/c/tune/exp"
    assert uri_on(blob, "d/x") == "abfs://acct.blob.core.windows.net/d/x"
    azurite = "abfs://devstoreaccount1@127.0.0.1:10000/c/tune?enable_tls=false"
    assert uri_on(azurite, "d/x") == "abfs://devstoreaccount1@127.0.0.1:10000/d/x?enable_tls=false"
    short = "abfs://acct@c/tune"  # the host is the container, the user the account
    assert uri_on(short, "c/tune/exp") == "abfs://acct@c/tune/exp"
    assert uri_on(short, "d/x") == "abfs://acct@d/x"
    for storage in (dfs, blob, azurite, short, "abfs://c@acct.dfs.core.windows.net"):
        assert store_path(storage) == open_uri(storage)[1]
        for path in ("c/tune/exp/t/epoch_0002", "c/tune", "d/x/y"):
            assert open_uri(uri_on(storage, path))[1] == path, (storage, path)


def test_a_teacher_on_s3_is_fetched_once_per_node_into_a_cache_keyed_by_its_checksum(s3, tmp_path):
    run = tmp_path / "run"
    _fake_checkpoint(run / "checkpoints" / "epoch_0001", b"old weights")
    sha = _fake_checkpoint(run / "checkpoints" / "epoch_0002", b"new weights")
    _upload(s3, run, "teachers/run")
    uri = s3.uri("teachers/run")

    found, meta = locate_checkpoint(uri)  # a run directory: its latest complete epoch
    assert found == s3.uri("teachers/run/checkpoints/epoch_0002") and meta["model_sha256"] == sha
    cache = tmp_path / "cache"
    local = fetch_checkpoint(uri, cache=cache)
    assert local == cache / "teachers" / sha
    assert (local / "model.safetensors").read_bytes() == b"new weights"
    assert sorted(p.name for p in local.iterdir()) == ["meta.json", "model.safetensors"]
    # Fetched once: with the weights gone from the bucket, the node's copy still serves.
    s3.filesystem().delete_file(f"{s3.bucket}/teachers/run/checkpoints/epoch_0002/model.safetensors")
    assert fetch_checkpoint(uri, cache=cache) == local
    assert [p.name for p in (cache / "teachers").iterdir() if not p.name.startswith(".")] == [sha]


def test_a_corrupt_or_missing_remote_teacher_is_one_line_and_leaves_no_cache(s3, tmp_path):
    bad = tmp_path / "bad"
    _fake_checkpoint(bad, b"weights")
    (bad / "model.safetensors").write_bytes(b"replaced after meta.json was written")
    _upload(s3, bad, "teachers/bad")
    with pytest.raises(CheckpointError, match="does not match its meta.json sha256"):
        fetch_checkpoint(s3.uri("teachers/bad"), cache=tmp_path / "cache")
    assert [p for p in (tmp_path / "cache" / "teachers").iterdir() if not p.name.startswith(".")] == []
    with pytest.raises(CheckpointError, match=r"s3://geodistill/teachers/none: no checkpoint here"):
        locate_checkpoint(s3.uri("teachers/none"))


def test_the_leaderboard_on_s3_writes_and_reads_rows(s3):
    lb = Leaderboard(s3.uri("lb"))
    lb.check_writable("exp")
    rows = [make_row(experiment="exp", trial_id=f"t{i}", stage="student", gflops=float(i)) for i in range(3)]
    lb.write(rows[:2])
    lb.write(rows[2:])
    back = lb.read("exp")
    assert sorted(back["trial_id"]) == ["t0", "t1", "t2"] and sorted(back["gflops"]) == [0.0, 1.0, 2.0]
    assert lb.keys("exp") == {f"exp/t{i}/student" for i in range(3)}
    assert len(lb.files("exp")) == 2 and lb.experiments() == ["exp"]


@pytest.mark.slow  # 10-30 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_an_unreachable_s3_leaderboard_is_one_line():
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=r"^cannot write to leaderboard s3://b/lb\?[^\n]*$"):
        Leaderboard(f"s3://b/lb?endpoint_override={dead}&scheme=http").check_writable("exp")


@pytest.mark.slow  # composes the run config and retries the dead endpoint: ~30 s on a loaded box
def test_an_unreachable_s3_teacher_is_one_line_and_exit_2_before_any_training(tmp_path, capsys):
    dead = f"127.0.0.1:{free_port()}"
    teacher = f"s3://b/teachers/run?endpoint_override={dead}&scheme=http"
    code = main(
        ["search", "search_space=smoke", "preset=smoke", "--teacher", teacher, "--storage", str(tmp_path / "tune"),
         "--leaderboard", str(tmp_path / "lb")]
    )  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "cannot read teacher checkpoint s3://b/teachers/run:" in err[0]
    assert not (tmp_path / "tune").exists()


@pytest.mark.slow
def test_a_search_distils_from_a_teacher_on_s3_and_writes_its_rows_to_s3(s3, tmp_path):
    """The real CLI (its own local Ray head): teacher fetched from S3, rows written to S3."""
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import SearchPlan, train_teacher_for
    from geodistill.platform.search.space import load_space

    base = compose_run_config(["preset=smoke", f"output_dir={tmp_path / 'work'}"])
    space = load_space("smoke", base=base.to_dict())
    teacher = train_teacher_for(SearchPlan.build(space, base, check_teacher=False), tmp_path / "t")
    # The run directory, without the optimizer state (a teacher needs none; it only slows moto).
    _upload(s3, teacher.parent.parent, "teachers/smoke", skip=("train_state.pt",))
    lb_uri = s3.uri("leaderboard")
    cache = tmp_path / "node-cache"
    env = {**os.environ, "GEODISTILL_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "geodistill", "search", "search_space=smoke", "preset=smoke",
        f"output_dir={tmp_path / 'work'}", "--teacher", s3.uri("teachers/smoke"), "--leaderboard", lb_uri,
        "--storage", str(tmp_path / "tune"), "--experiment", "s3", "--num-samples", "2",
        "--max-concurrent", "1", "--no-report",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = Leaderboard(lb_uri).read("s3")
    assert rows.height == 2 and set(rows["status"]) <= {"ok", "stopped"}, rows.to_dicts()
    assert (rows["teacher"] == s3.uri("teachers/smoke/checkpoints/" + teacher.name)).all()
    sha = json.loads((teacher / "meta.json").read_text())["model_sha256"]
    assert [p.name for p in (cache / "teachers").iterdir() if not p.name.startswith(".")] == [sha]


def _tree(fs, root: str) -> list[str]:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File)


@pytest.mark.parametrize("where", ["s3", "file"])
def test_drop_stale_state_on_keeps_the_training_state_of_the_latest_only(s3, tmp_path, where):
    from geodistill.platform.runtime.remote import drop_stale_state_on, open_uri

    local = tmp_path / "run"
    for epoch in (1, 2, 3):
        _fake_checkpoint(local / f"epoch_000{epoch}", b"weights %d" % epoch)
    (local / "epoch_0004").mkdir()  # incomplete (no meta.json): not a checkpoint, left alone
    (local / "epoch_0004" / "train_state.pt").write_bytes(b"half written")
    if where == "s3":
        _upload(s3, local, "runs/run")
        fs, root = open_uri(s3.uri("runs/run"))
    else:
        fs, root = open_uri(f"file://{local}")
    gone = drop_stale_state_on(fs, root, f"{root}/epoch_0003")
    assert sorted(g[len(root) + 1 :] for g in gone) == [
        "epoch_0001/train_state.pt",
        "epoch_0002/train_state.pt",
    ]
    assert [p for p in _tree(fs, root) if p.endswith("train_state.pt")] == [
        "epoch_0003/train_state.pt",
        "epoch_0004/train_state.pt",
    ]
    assert "epoch_0001/model.safetensors" in _tree(fs, root)


@pytest.mark.slow  # one Ray Train worker group persisting to moto: ~30 s
def test_a_ray_train_run_on_s3_keeps_its_best_without_the_training_state(s3, ray_local, tmp_path):
    """As on local storage: the latest whole (a re-run resumes from it), the best weights only."""
    from trivial_search import equal_recalls_fit

    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.runtime.train_driver import run_training

    cfg = compose_run_config(
        [
            "preset=smoke",
            f"output_dir={tmp_path}",
            "run_name=on_s3",
            "train.epochs=3",
            "scaling.num_workers=1",
        ]
    )
    result = run_training(cfg, storage_path=s3.uri("runs"), max_failures=0, fit_fn=equal_recalls_fit)
    files = [p for p in _tree(s3.filesystem(), f"{s3.bucket}/runs/on_s3") if p.startswith("epoch_")]
    assert files == [
        "epoch_0001/meta.json",  # the best (recall 5, as epoch 2: the earlier is kept)
        "epoch_0001/model.safetensors",
        "epoch_0003/meta.json",  # the latest
        "epoch_0003/model.safetensors",
        "epoch_0003/train_state.pt",
    ]
    # The result names the latest by a URI a user opens (scheme and endpoint options kept), not
    # Ray's scheme-less path on the store (bucket/...), which read locally names a folder in the cwd.
    assert result.checkpoint == s3.uri("runs/on_s3/epoch_0003")
    local = fetch_checkpoint(result.checkpoint, cache=tmp_path / "cache")
    assert (local / "model.safetensors").read_bytes() == b"w" * 1000
    assert json.loads((local / "meta.json").read_text())["epoch"] == 3


@pytest.mark.slow  # a search of one Ray Train trial (a TorchTrainer), Tune and the run on moto: ~60 s
def test_a_ray_train_search_trial_on_s3_names_its_checkpoint_by_uri_and_keeps_no_state(
    s3, ray_local, tmp_path, monkeypatch
):
    """Its row names the latest as a URI ``geodistill eval`` / ``fetch_checkpoint`` opens; ended,
    nothing resumes it, so no epoch on the store keeps ``train_state.pt``; nothing local is touched."""
    from trivial_search import equal_recalls_fit, search, trivial_space

    monkeypatch.setenv("GEODISTILL_OPTUNA_DIR", str(tmp_path / "optuna"))  # the study off the store
    monkeypatch.chdir(tmp_path)  # Ray's scheme-less paths (geodistill/...) would land here
    result = search(
        trivial_space(3, **{"scaling.num_workers": 1}),
        overrides=[f"output_dir={tmp_path / 'work'}"],
        experiment="rt-s3",
        num_samples=1,
        sampler="random",
        seed=3,
        keep_checkpoints="all",
        early_stopping=False,
        objective=equal_recalls_fit,
        storage=s3.uri("tune"),
        leaderboard=str(tmp_path / "lb"),
        verbose=0,
    )
    row = result.rows.row(0, named=True)
    assert result.rows.height == 1 and row["status"] == "ok", result.rows
    run = f"tune/rt-s3/trainers/{row['trial_id']}"
    assert row["checkpoint_uri"] == s3.uri(f"{run}/epoch_0003")
    local = fetch_checkpoint(row["checkpoint_uri"], cache=tmp_path / "cache")
    assert json.loads((local / "meta.json").read_text())["epoch"] == 3
    assert [p for p in _tree(s3.filesystem(), f"{s3.bucket}/{run}") if p.startswith("epoch_")] == [
        "epoch_0001/meta.json",  # the best
        "epoch_0001/model.safetensors",
        "epoch_0003/meta.json",  # the latest, without its training state: the trial has ended
        "epoch_0003/model.safetensors",
    ]
    assert not (tmp_path / s3.bucket).exists()


def test_the_latest_epoch_is_found_by_number_not_by_name(tmp_path):
    for epoch in (9999, 10000):  # the names sort the other way round as text
        _fake_checkpoint(tmp_path / "run" / "checkpoints" / f"epoch_{epoch:04d}", f"weights {epoch}".encode())
    found, _ = locate_checkpoint(str(tmp_path / "run"))
    assert found.endswith("epoch_10000")
