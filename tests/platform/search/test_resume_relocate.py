"""A moved experiment's saved searcher names a SQLite study file that is gone: ``relocate`` points
it at the one beside the folder, changing nothing outside that one unpickling."""

from __future__ import annotations

import shutil

import optuna
from ray import cloudpickle

from geodistill.platform.search.resume import relocate
from geodistill.platform.search.study_storage import open_storage

OWN_SETSTATE = optuna.storages.RDBStorage.__dict__["__setstate__"]


class ClassProbe:
    """Unpickled beside the storage: records whether ``RDBStorage`` kept its own ``__setstate__``."""

    seen: list[bool] = []

    def __init__(self) -> None:
        self.name = "probe"  # a state, so unpickling calls __setstate__

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        ClassProbe.seen.append(optuna.storages.RDBStorage.__dict__["__setstate__"] is OWN_SETSTATE)


def test_a_gone_sqlite_file_is_found_beside_the_moved_folder_and_no_class_is_patched(tmp_path):
    old = tmp_path / "old" / "exp"
    old.mkdir(parents=True)
    storage = open_storage(f"sqlite:///{old}/optuna.db")
    optuna.create_study(study_name="exp", storage=storage).enqueue_trial({"x": 1.0})
    folder = tmp_path / "moved" / "exp"
    folder.mkdir(parents=True)
    saved = folder / "searcher-state-2026-01-01_00-00-00.pkl"
    saved.write_bytes(cloudpickle.dumps({"storage": storage, "probe": ClassProbe()}))
    storage.remove_session()
    storage.engine.dispose()
    shutil.move(old / "optuna.db", folder / "optuna.db")
    ClassProbe.seen.clear()

    new_url = f"sqlite:///{folder}/optuna.db"
    assert relocate(folder, study_url=new_url) == [saved.name]
    assert ClassProbe.seen == [True]  # the storage's class was never patched while it loaded
    state = cloudpickle.loads(saved.read_bytes())
    assert type(state["storage"]) is type(storage) and state["storage"].url == new_url
    assert len(optuna.load_study(study_name="exp", storage=state["storage"]).trials) == 1
    assert not (old / "optuna.db").exists()  # no empty study created where the file was
    assert relocate(folder, study_url=new_url) == []  # now it names a file that is there
