"""Declared CLI flags: every value a user types is typed and range-checked while argv is parsed.

``flag(int, ge=1)`` is an argparse ``type=`` that converts the text and checks it against a
``geodistill.schema.Rule`` (the same rules the config keys declare), so a bad value stops the
command before any import of torch or Ray, before data is read and before anything trains.
``OneLineParser`` makes every argparse error one line (``geodistill search: error: argument
--num-samples: 0 must be >= 1 ...``) with exit status 2, like a ``UserError``.

tests/reliability/test_fuzz_inputs.py walks every parser, reads each flag's ``FlagType`` and
fuzzes it; a flag without one fails ``test_every_flag_is_declared``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

from geodistill.schema import Rule


class FlagType:
    """argparse ``type=``: text -> ``base`` value, refused (one line) unless ``rule`` allows it."""

    def __init__(self, base: type, rule: Rule) -> None:
        if base not in (int, float, str):
            raise ValueError(f"flag base type must be int, float or str, got {base!r}")
        self.base = base
        self.rule = rule
        self.__name__ = base.__name__  # argparse names the type in some messages

    def __call__(self, text: str) -> Any:
        if self.base is int:
            try:
                value: Any = int(text.strip(), 10)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not an integer ({self.rule.allowed()})"
                ) from None
        elif self.base is float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not a number ({self.rule.allowed()})"
                ) from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"{text!r} is not a finite number ({self.rule.allowed()})")
        else:
            value = text
        problem = self.rule.problem(value)
        if problem:
            shown = repr(text) if self.base is str else text
            if f"got {shown}" in problem:  # a validator that names the value already: say it once
                raise argparse.ArgumentTypeError(problem)
            raise argparse.ArgumentTypeError(f"{problem}; got {shown}")
        return value

    def __repr__(self) -> str:
        return f"FlagType({self.base.__name__}, {self.rule})"


def flag(base: type = str, **rule: Any) -> FlagType:
    """``type=flag(int, ge=1, le=10_000)``, ``type=flag(kind="out_dir")``, ``type=flag(choices=(...))``."""
    return FlagType(base, Rule(**rule))


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block) and exit 2.

    Subparsers inherit the class (``add_subparsers`` uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # argparse wraps long choice lists over lines
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def walk_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield (command path, parser) for ``parser`` and every subcommand under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk_parsers(sub, (*path, name))


def value_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``parser`` that take a value from argv (not help, version, store_true or subcommands)."""
    skip = (
        argparse._HelpAction,
        argparse._VersionAction,
        argparse._SubParsersAction,
        argparse._StoreConstAction,  # store_true / store_false
        argparse._CountAction,
    )
    return [a for a in parser._actions if not isinstance(a, skip) and a.nargs != 0]


def free_form(action: argparse.Action) -> bool:
    """Positional catch-alls (Hydra overrides, ``search_space=...``) are checked by config composition."""
    return not action.option_strings and action.nargs in ("*", argparse.REMAINDER)


# Flags several commands share: declared once here, so each means the same (and takes the same
# values) wherever a user types it.
LEADERBOARD_HELP = "leaderboard root, a folder or a URI (default $GEODISTILL_LEADERBOARD or runs/leaderboard)"


def add_leaderboard_flag(parser: argparse.ArgumentParser, *names: str, dest: str = "leaderboard") -> None:
    """``--leaderboard`` (or ``names``): where leaderboard rows are read or written.

    A folder or any URI ``geodistill.leaderboard.Leaderboard`` opens (``s3://...``); unset, the
    command falls back to ``$GEODISTILL_LEADERBOARD`` or ``runs/leaderboard``.
    """
    parser.add_argument(
        *(names or ("--leaderboard",)), dest=dest, type=flag(kind="store"), help=LEADERBOARD_HELP
    )


def add_data_flag(
    parser: argparse.ArgumentParser, what: str = "dataset root (UniV or University-1652)"
) -> None:
    """``--data``: a dataset root on disk (its layout is checked when the command reads it)."""
    parser.add_argument("--data", type=flag(kind="text"), help=what)


def add_setting_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of dataclass ``cls`` declared with ``schema.setting``: its rule, default and help.

    ``--field-name`` unless the field's ``flag`` says otherwise (``flag=""``: no flag). A bool
    field is a switch (``--no-x`` for a True default); a field with ``const`` is a switch that
    stores it. The parsed values go back into ``cls`` with ``settings_from_args``.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f.metadata.get("flag")
        if name == "":
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        spelled = name or "--" + f.name.replace("_", "-")
        text = f.metadata.get("help") or ""
        if hints[f.name] is bool:
            parser.add_argument(
                spelled, dest=f.name, action="store_false" if default else "store_true", help=text
            )
            continue
        if f.metadata.get("const") is not None:
            parser.add_argument(
                spelled,
                dest=f.name,
                action="store_const",
                const=f.metadata["const"],
                default=default,
                help=text,
            )
            continue
        base = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        shown = f" (default {default})" if default is not None and "(default" not in text else ""
        parser.add_argument(
            spelled,
            dest=f.name,
            metavar=spelled.lstrip("-").replace("-", "_").upper(),
            type=FlagType(base, f.metadata["rule"]),
            default=default,
            help=text + shown,
        )


def settings_from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """``cls`` built from the flags ``add_setting_flags`` declared (``extra`` for the others)."""
    import dataclasses

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **extra})
