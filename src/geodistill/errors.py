"""Errors a user can cause. The CLI prints them as one line and exits non-zero.

Raise a ``UserError`` (or a subclass) for anything a user can fix: a wrong path, a bad
layout, a corrupt file, an unknown name, a malformed config. Everything else is a bug and
keeps its traceback.

``one_line(err)`` is the one way an exception becomes the single line a user reads.
"""

from __future__ import annotations

import re


class UserError(Exception):
    """A problem in the user's input; its message is the one line the user sees."""

    exit_code = 2


class DataError(UserError):
    """Dataset path, layout or media problems."""


class CorruptMediaError(DataError):
    """An image or video that cannot be decoded. The message names the file."""


class ConfigError(UserError):
    """Malformed or inconsistent configuration (YAML, overrides, search spaces)."""


class UnknownBackboneError(ConfigError):
    """A backbone name that the registry does not know."""


class UnsupportedBackboneError(ConfigError):
    """A timm model that lacks the generic feature API (``forward_intermediates``) GeoModel reads."""


class CheckpointError(UserError):
    """A checkpoint that is unsafe, missing, or does not fit the model."""


class WeightsUnavailableError(CheckpointError):
    """Pretrained weights that are neither cached locally nor downloadable from here."""


class RegressionFailure(Exception):
    """Raised by a gate that measured a regression (exit code 1, not a user error)."""

    exit_code = 1


def one_line(err: BaseException, *, root_cause: bool = False) -> str:
    """The one line a user reads for ``err``: its first non-empty line (else its type's name).

    ``root_cause=True`` is for errors a runner wrapped (Ray wraps a trial's exception, whose
    text starts with a header and ends with the original message): follow ``cause`` /
    ``__cause__`` to the innermost error and return ``Type: last line`` of it.
    """
    if not root_cause:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        return lines[0] if lines else type(err).__name__
    cause = err
    for _ in range(5):
        inner = getattr(cause, "cause", None) or cause.__cause__
        if inner is None or inner is cause:
            break
        cause = inner
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    message = lines[-1].strip() if lines else ""
    name = type(cause).__name__
    if re.match(rf"^{re.escape(name)}\b", message) or re.match(r"^\w+(Error|Exception)\b", message):
        return message
    return f"{name}: {message}" if message else name
