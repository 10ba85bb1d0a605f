"""``study_retry``: which storage errors are waited out (the server away) and which are raised at once.

The restart itself (a real PostgreSQL crashed and started again under a search) is
``test_study_storage.py::test_a_search_outlives_its_postgres_restarting_and_loses_no_trial``.
"""

from __future__ import annotations

import pickle
import time

import optuna
import pytest
from sqlalchemy import exc as sa_exc

from geodistill.platform.search.study_retry import RetryingRDBStorage, server_unreachable


def _wrapped(cause: BaseException) -> optuna.exceptions.StorageInternalError:
    try:
        try:
            raise cause
        except Exception as err:
            raise optuna.exceptions.StorageInternalError("commit failed") from err
    except optuna.exceptions.StorageInternalError as wrapped:
        return wrapped


def test_only_a_server_that_cannot_be_reached_is_retried():
    refused = sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    assert server_unreachable(refused) and server_unreachable(_wrapped(refused))
    assert server_unreachable(sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")))
    too_long = sa_exc.DataError("INSERT", {}, Exception("value too long"))
    assert not server_unreachable(_wrapped(too_long)) and not server_unreachable(KeyError("no study"))


def test_other_errors_are_raised_at_once_and_the_storage_still_works(tmp_path):
    storage = RetryingRDBStorage(f"sqlite:///{tmp_path}/s.db", engine_kwargs={"pool_pre_ping": True})
    start = time.monotonic()
    with pytest.raises(KeyError):
        storage.get_study_id_from_name("missing")
    assert time.monotonic() - start < 2.0  # not waited on
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert [t.state.name for t in optuna.load_study(study_name="s", storage=storage).trials] == [
        "COMPLETE"
    ] * 2
    copy = pickle.loads(pickle.dumps(storage))  # Tune saves its searcher (and the storage) by pickling
    assert isinstance(copy, RetryingRDBStorage) and len(copy.get_all_trials(study._study_id)) == 2
