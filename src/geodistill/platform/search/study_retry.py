"""An Optuna ``RDBStorage`` that rides out its database server restarting (``--study-storage``).

A search keeps talking to its study for hours; a PostgreSQL restart (an upgrade, a failover, a
crash) cuts every pooled connection and refuses new ones for a while. Optuna's ``RDBStorage``
turns that into ``StorageInternalError`` on the next call, which ends the search in Tune's loop.
Here every storage call that fails because the server cannot be reached (SQLAlchemy's
``OperationalError`` / ``InterfaceError``, directly or as the cause Optuna wraps) is retried with
backoff for ``window_s`` seconds; other errors are raised at once. ``pool_pre_ping`` (set by
``study_storage.open_storage``) replaces a pooled connection the restart killed before it is used.
A write whose commit reached the server but whose reply was lost is retried too (rare; Optuna's
own trial creation retries the same way on deadlocks).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

RETRY_WINDOW_S = 300.0  # a restarting server is back in seconds; a failover can take minutes
_UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)


def server_unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or the error Optuna wrapped in it) says the database could not be reached."""
    if isinstance(err, optuna.exceptions.StorageInternalError):
        err = err.__cause__ or err
    return isinstance(err, _UNREACHABLE)


class RetryingRDBStorage(RDBStorage):
    """``RDBStorage`` whose calls wait out a database server that is away (see the module doc)."""

    window_s: float = RETRY_WINDOW_S


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline, delay = time.monotonic() + self.window_s, 0.5
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                if not server_unreachable(err) or time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "Optuna study storage unreachable (%s): retrying %s", type(err).__name__, method.__name__
                )
                time.sleep(delay)
                delay = min(2 * delay, 5.0)

    return call


for _name, _value in vars(BaseStorage).items():
    if not _name.startswith("_") and callable(_value):
        setattr(RetryingRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))
