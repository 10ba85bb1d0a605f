"""``errors.one_line``: the single line a user reads for an exception."""

from __future__ import annotations

from geodistill.errors import ConfigError, one_line


def test_first_non_empty_line_or_the_type_name():
    assert one_line(ValueError("\n  bad value  \nmore detail")) == "bad value"
    assert one_line(RuntimeError("")) == "RuntimeError"


class Wrapper(Exception):
    """Stands in for Ray's RayTaskError: a header, a traceback, then the original message."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ray::trial() (pid=1)\n  File x.py, line 2\n{type(cause).__name__}: {cause}")
        self.cause = cause


def test_root_cause_follows_the_wrapped_error_to_its_last_line():
    inner = ConfigError("unknown backbone 'nope'")
    assert one_line(Wrapper(inner), root_cause=True) == "ConfigError: unknown backbone 'nope'"
    try:
        try:
            raise KeyError("k")
        except KeyError as err:
            raise RuntimeError("outer") from err
    except RuntimeError as outer:
        assert one_line(outer, root_cause=True) == "KeyError: 'k'"
        assert one_line(outer) == "outer"
    assert one_line(ValueError("ValueError: already named"), root_cause=True) == "ValueError: already named"
