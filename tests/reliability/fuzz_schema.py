"""Hypothesis strategies drawn from the declared schema: a bad value for any config key or CLI flag.

Nothing here lists keys or flags by hand. ``config_keys()`` reads every leaf field of
``RunConfig`` with its ``Rule`` (``geodistill.schema``), ``cli_flags()`` walks every parser of
the CLI and reads each flag's ``FlagType``; the strategies below turn a rule into values it
must refuse: wrong types, numbers out of range (and huge ones), NaN and infinity, unknown
choices, empty strings, names with path separators, and paths that cannot be used. A key or
flag added tomorrow is fuzzed by the same code.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from geodistill.platform.cli import build_parser
from geodistill.platform.cli.flags import FlagType, free_form, value_actions, walk_parsers
from geodistill.schema import Rule, declared_keys
from geodistill.train.config import RunConfig

HUGE = 10**30
# Text without quotes, backslashes, "$" or "=" (so a Hydra override carries it verbatim) and not
# starting with "-" (so argparse reads it as a value).
SAFE = st.characters(
    min_codepoint=32, max_codepoint=0x2FF, exclude_characters="'\"\\$=`{}[](),:#%@!*?&|;<>~^"
)


@dataclass(frozen=True)
class Key:
    """One config key: dotted name, Python type, declared rule."""

    name: str
    base: type  # int | float | str | bool
    rule: Rule


@dataclass(frozen=True)
class Flag:
    """One CLI value: the command path, how to pass it, and its declared type."""

    command: tuple[str, ...]
    option: str | None  # "--num-samples"; None for a positional
    dest: str
    kind: FlagType


def config_keys(cls: type = RunConfig) -> list[Key]:
    keys = []
    for name, (hint, rule) in declared_keys(cls).items():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = next(o for o in options if o is not type(None))
        keys.append(Key(name, base, rule))
    return keys


def cli_flags() -> list[Flag]:
    flags = []
    for path, parser in walk_parsers(build_parser()):
        for action in value_actions(parser):
            if free_form(action) or not isinstance(action.type, FlagType):
                continue
            option = max(action.option_strings, key=len) if action.option_strings else None
            flags.append(Flag(path, option, action.dest, action.type))
    return flags


def undeclared_flags() -> list[str]:
    """Flags taking a value without a FlagType (must stay empty)."""
    out = []
    for path, parser in walk_parsers(build_parser()):
        for action in value_actions(parser):
            if not free_form(action) and not isinstance(action.type, FlagType):
                out.append(" ".join([*path, *(action.option_strings or [action.dest])]))
    return out


# ---------------------------------------------------------------- strategies


def _below(bound: float, *, inclusive: bool, integer: bool) -> st.SearchStrategy:
    """Values < bound (<= bound when ``inclusive``), down to -HUGE."""
    if integer:
        top = math.floor(bound) if inclusive else math.ceil(bound) - 1
        return st.integers(min_value=-HUGE, max_value=top)
    return st.floats(max_value=bound, exclude_max=not inclusive, allow_nan=False, allow_infinity=False)


def _above(bound: float, *, inclusive: bool, integer: bool) -> st.SearchStrategy:
    """Values > bound (>= bound when ``inclusive``), up to HUGE."""
    if integer:
        low = math.ceil(bound) if inclusive else math.floor(bound) + 1
        return st.integers(min_value=low, max_value=HUGE)
    return st.floats(min_value=bound, exclude_min=not inclusive, allow_nan=False, allow_infinity=False)


def out_of_range(rule: Rule, *, integer: bool) -> list[st.SearchStrategy]:
    out = []
    if rule.ge is not None:
        out.append(_below(rule.ge, inclusive=False, integer=integer))
    if rule.gt is not None:
        out.append(_below(rule.gt, inclusive=True, integer=integer))
    if rule.le is not None:
        out.append(_above(rule.le, inclusive=False, integer=integer))
    if rule.lt is not None:
        out.append(_above(rule.lt, inclusive=True, integer=integer))
    return out


def words() -> st.SearchStrategy[str]:
    """Non-numeric text (a wrong type for a number)."""
    return st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12).filter(
        lambda s: s not in ("nan", "inf", "infinity", "true", "false", "null", "e")
    )


def bad_texts(rule: Rule, places: dict[str, Path]) -> st.SearchStrategy[str]:
    """Text the rule refuses: empty or blank always; then what the kind refuses."""
    options = [st.sampled_from(["", " ", "   "])]
    kind = rule.kind or "text"
    if rule.options() is not None:
        known = set(map(str, rule.options()))
        options.append(st.text(SAFE, min_size=1, max_size=16).filter(lambda s: s.strip() and s not in known))
    if rule.validator is not None:
        options.append(
            st.text(st.characters(min_codepoint=97, max_codepoint=122), max_size=8).map(
                lambda s: f"no-such-{s}"
            )
        )
    if kind == "name":
        options.append(st.sampled_from(["..", ".", "a/b", "../escape", "x y", "tab\tname", "ü"]))
    if kind in ("in_path", "in_dir", "in_file"):
        options.append(
            st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8).map(
                lambda s: str(places["missing"] / s)
            )
        )
    if kind == "in_dir":
        options.append(st.just(str(places["file"])))
    if kind == "in_file":
        options.append(st.just(str(places["dir"])))
    if kind in ("out_dir", "store", "out_file"):
        options.append(
            st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8).map(
                lambda s: str(places["file"] / s)  # a folder under a regular file cannot be created
            )
        )
    if kind in ("out_dir", "store"):
        options.append(st.just(str(places["file"])))
    return st.one_of(options)


def bad_config_value(key: Key, places: dict[str, Path]) -> st.SearchStrategy[Any]:
    """A Python value (as Hydra would parse it) that ``key`` must refuse."""
    rule = key.rule
    if key.base is bool:
        return st.one_of(words(), st.integers(min_value=2, max_value=HUGE), st.just(0.5))
    if key.base in (int, float):
        integer = key.base is int
        options = [words(), st.just(True), *out_of_range(rule, integer=integer)]
        if integer:
            options.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)))
        else:
            options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        if rule.options() is not None:
            known = set(rule.options())
            options.append(st.integers(min_value=-HUGE, max_value=HUGE).filter(lambda v: v not in known))
        return st.one_of(options)
    # str keys: wrong types, and text the rule refuses
    return st.one_of(st.integers(min_value=-HUGE, max_value=HUGE), st.just(False), bad_texts(rule, places))


def bad_flag_text(flag: Flag, places: dict[str, Path]) -> st.SearchStrategy[str]:
    """argv text that ``flag`` must refuse."""
    rule, base = flag.kind.rule, flag.kind.base
    if base is str:
        return bad_texts(rule, places)
    integer = base is int
    options = [words(), st.sampled_from(["", " "])]
    options += [s.map(_number_text) for s in out_of_range(rule, integer=integer)]
    if integer:
        options.append(st.sampled_from(["1.5", "1e3", "0x10"]))
    else:
        options.append(st.sampled_from(["nan", "inf", "-inf", "1e999"]))
    if rule.options() is not None:
        known = set(rule.options())
        options.append(st.integers(min_value=-HUGE, max_value=HUGE).filter(lambda v: v not in known).map(str))
    return st.one_of(options)


def _number_text(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def hydra_value(value: Any) -> str:
    """``value`` as a Hydra override value that parses back to the same Python value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return "'" + value + "'"  # SAFE text has no quotes, backslashes or "$"


def argv_for(flag: Flag, text: str, places: dict[str, Path]) -> list[str]:
    """The command line: the command, the bad value first, then what the command requires."""
    argv = list(flag.command)
    argv += [f"{flag.option}={text}"] if flag.option else ["--", text] if text.startswith("-") else [text]
    required = REQUIRED.get(flag.command, {})
    for option, value in required.items():
        if option != flag.option:
            argv = [*argv[: len(flag.command)], option, value.format(**places), *argv[len(flag.command) :]]
    return argv


# Options a command cannot parse without (the fuzzed value is checked first, but the rest is valid).
REQUIRED: dict[tuple[str, ...], dict[str, str]] = {
    ("data", "synth"): {"--out": "{dir}/synth_out_unused"},
    ("report",): {"--out": "{dir}/report_out_unused"},
}
