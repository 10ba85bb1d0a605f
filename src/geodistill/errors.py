"""Errors a user can cause. The CLI prints them as one line and exits non-zero.

Raise a ``UserError`` (or a subclass) for anything a user can fix: a wrong path, a bad
layout, a corrupt file, an unknown name, a malformed config. Everything else is a bug and
keeps its traceback.
"""


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
