"""Declared types and ranges for every config key and CLI flag, checked before anything runs.

A config dataclass declares each field with ``setting(default, ge=..., le=..., choices=...)``:
the rule lives next to the field, so a new key is validated (and fuzzed by the reliability
tests) the moment it is added. ``check_fields`` walks a dataclass and raises one
``ConfigError`` line naming the dotted key, the value and what is allowed; CLI flags use the
same ``Rule`` through ``geodistill.platform.cli.flags``. Every number has an upper bound and
no float may be NaN or infinite; paths are checked as text, or also on the file system
(``filesystem=True``). Why: docs/design.md, "Config validation".
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from geodistill.errors import ConfigError, UserError

# What a text value may be: the checks behind each kind are in ``Rule.check_text``.
#   text      any non-empty text without a NUL byte
#   name      a plain name used inside paths: letters, digits, "_", "-", ".", "+", not "."/".."
#   in_path   an existing file or directory;  in_dir: an existing directory;  in_file: a file
#   out_dir   a directory that exists or can be created (its nearest existing parent is a
#             writable directory)
#   out_file  a file that can be written (its folder exists or can be created)
#   store     out_dir, or a URI with "://" (a Tune storage path)
TEXT_KINDS = ("text", "name", "in_path", "in_dir", "in_file", "out_dir", "out_file", "store")
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit
T = TypeVar("T")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+")


@dataclass(frozen=True)
class Rule:
    """What one key or flag accepts. ``choices`` may be a callable (a registry read lazily);
    ``validator`` (value -> None, raising a UserError) checks open-ended names such as backbones."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    kind: str | None = None  # one of TEXT_KINDS for text values
    validator: Callable[[Any], None] | None = None
    allow_empty: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in TEXT_KINDS:
            raise ValueError(f"unknown text kind {self.kind!r}")

    def options(self) -> tuple[Any, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def allowed(self) -> str:
        """What is allowed, in words (the end of an error line)."""
        options = self.options()
        if options is not None:
            return "one of " + ", ".join(map(str, options))
        parts = []
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op} {bound:g}" if isinstance(bound, float) else f"{op} {bound}")
        if self.kind is not None:
            parts.append(_KIND_WORDS[self.kind])
        return " and ".join(parts) or "any value"

    def problem(self, value: Any, *, filesystem: bool = True, raise_validator: bool = False) -> str | None:
        """None if ``value`` (already of the right Python type) is allowed, else what is wrong.

        ``raise_validator``: let the validator's own UserError (say UnknownBackboneError) propagate.
        """
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number ({self.allowed()})"
        options = self.options()
        if options is not None and isinstance(value, Mapping | list):  # a mapping's keys, a list's items
            bad = [item for item in value if item not in options]
            if bad:
                return f"has {_show(bad[0])}, which is not {self.allowed()}"
        elif options is not None and value not in options:
            return f"must be {self.allowed()}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if (
                (self.ge is not None and not value >= self.ge)
                or (self.gt is not None and not value > self.gt)
                or (self.le is not None and not value <= self.le)
                or (self.lt is not None and not value < self.lt)
            ):
                return f"must be {self.allowed()}"
        if isinstance(value, str):
            problem = self.check_text(value, filesystem=filesystem)
            if problem:
                return problem
        if self.validator is not None:
            try:
                self.validator(value)
            except UserError as err:
                if raise_validator:
                    raise
                return str(err)
        return None

    def check_text(self, text: str, *, filesystem: bool = True) -> str | None:
        if not text.strip() and not self.allow_empty:
            return "must not be empty"
        if "\x00" in text:
            return "must not contain a NUL byte"
        kind = self.kind or "text"
        if kind == "name":
            if text in (".", "..") or not set(text) <= _NAME_CHARS:
                return "must be a plain name (letters, digits, '_', '-', '.', '+')"
        if not filesystem or kind in ("text", "name"):
            return None
        return path_problem(text, kind)


_KIND_WORDS = {
    "text": "non-empty text",
    "name": "a plain name (letters, digits, '_', '-', '.', '+')",
    "in_path": "an existing path",
    "in_dir": "an existing directory",
    "in_file": "an existing file",
    "out_dir": "a directory that exists or can be created",
    "out_file": "a file path whose folder exists or can be created",
    "store": "a directory that can be created, or a URI",
}


def path_problem(text: str, kind: str) -> str | None:
    """What stops ``text`` from being used as a path of ``kind`` (see TEXT_KINDS), or None."""
    if kind == "store" and "://" in text:
        return None
    try:
        path = Path(text).expanduser()
        exists = path.exists()
    except (OSError, ValueError, RuntimeError) as err:  # too long a name, bad bytes, no home dir
        return f"is not a usable path ({type(err).__name__}: {err})"
    if kind == "in_path":
        return None if exists else "does not exist"
    if kind == "in_dir":
        return None if path.is_dir() else ("is not a directory" if exists else "does not exist")
    if kind == "in_file":
        return None if path.is_file() else ("is not a file" if exists else "does not exist")
    folder = path if kind in ("out_dir", "store") else path.parent
    if kind == "out_file" and path.is_dir():
        return "is a directory, not a file"
    return _creatable_dir_problem(folder)


def _creatable_dir_problem(folder: Path) -> str | None:
    """None if ``folder`` is a directory or could be made by ``mkdir(parents=True)``."""
    probe = folder.absolute()
    try:
        if probe.is_dir():
            return None
        if probe.exists():
            return "is not a directory"
        for parent in probe.parents:
            if parent.is_dir():
                if not os.access(parent, os.W_OK | os.X_OK):
                    return f"cannot be created: {parent} is not writable"
                return None
            if parent.exists():
                return f"cannot be created: {parent} is a file"
    except OSError as err:
        return f"is not a usable path ({err})"
    return "cannot be created"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    help: str | None = None,  # noqa: A002 - argparse's name for it
    flag: str | None = None,
    const: Any = None,
    **rule: Any,
) -> Any:
    """A dataclass field with its declared ``Rule`` (the keyword arguments) in its metadata.

    ``help``, ``flag`` and ``const`` say how a CLI generated from the dataclass spells the field
    (``platform.flags.add_setting_flags``): ``flag=""`` keeps it off the command line.
    """
    metadata = {"rule": Rule(**rule), "help": help, "flag": flag, "const": const}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def rule_of(f: dataclasses.Field) -> Rule | None:
    return f.metadata.get("rule")


def check_fields(obj: Any, prefix: str = "", *, filesystem: bool = False) -> None:
    """Check every declared field of dataclass ``obj`` (recursively); ConfigError on the first bad one."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{key}.", filesystem=filesystem)
            continue
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        )
        for i, item in items:
            if dataclasses.is_dataclass(item):
                sub = f"{key}.{i}." if isinstance(value, dict) else f"{key}[{i}]."
                check_fields(item, sub, filesystem=filesystem)
        rule = rule_of(f)
        if rule is None or value is None:
            continue
        try:
            problem = rule.problem(value, filesystem=filesystem, raise_validator=True)
        except UserError as err:
            raise type(err)(f"{key}: {err}") from None
        if problem:
            raise ConfigError(f"{key} {problem}; got {_show(value)}")


def declared_keys(cls: type, prefix: str = "") -> dict[str, tuple[Any, Rule | None]]:
    """Dotted key -> (type hint, Rule or None) for every leaf field of dataclass ``cls``."""
    import typing

    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[Any, Rule | None]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(declared_keys(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (hint, rule_of(f))
    return out


def unknown_key(key: str, known: Iterable[str]) -> str:
    """``unknown config key train.epoch; did you mean train.epochs?`` (the closest known key, if any)."""
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f"unknown config key {key}" + (f"; did you mean {close[0]}?" if close else "")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def dotted(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` (or ``{"train.lr": 1}``) -> ``{"train.lr": 1}``: the keys overrides use.

    The one flattener of nested configs (search spaces, run-config comparison, trackers,
    report tooltips). Values are kept as they are; an empty mapping stays a value.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{name}."))
        else:
            out[name] = value
    return out


def build(cls: type[T], data: Any, prefix: str = "") -> T:
    """Dataclass ``cls`` from plain ``data`` (YAML, Hydra, JSON): the one door from text into config.

    Unknown keys are refused, a missing required field is named, every value is type-checked
    against its hint (nested dataclasses, ``list[...]`` and ``dict[str, ...]`` of them included);
    a ``ConfigError`` names the dotted key. The declared rules are ``check_fields``'s (run next).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ConfigError(unknown_key(f"{prefix}{unknown[0]}", (f"{prefix}{n}" for n in fields)))
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{prefix}{name} is required")
            continue
        kwargs[name] = _typed(f"{prefix}{name}", data[name], hints[name])
    return cls(**kwargs)


def _typed(key: str, value: Any, hint: Any) -> Any:
    """Accept ``value`` for a field typed ``hint`` (int for float is fine; bool for int is not).

    A ``list[str]`` field also takes one comma-separated string (``logger=tensorboard,mlflow``
    from a shell reads better than a Hydra list).
    """
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, {} if value is None else value, prefix=f"{key}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    inner = [a for a in args if a is not type(None)]
    if isinstance(hint, types.UnionType) and len(inner) == 1 and typing.get_origin(inner[0]) is not None:
        return None if value is None else _typed(key, value, inner[0])  # list[...] | None
    if origin is list:
        if isinstance(value, str) and args == (str,):
            if not value.strip():  # say `none` for no entries; an empty string is a slip
                raise ConfigError(f"{key} must be a comma-separated list (e.g. none); got ''")
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {_show(value)}")
        if args == (str,) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings, got {value!r}")
        return [_typed(f"{key}[{i}]", v, args[0] if args else Any) for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {_show(value)}")
        item = args[1] if args else Any
        return {str(k): _typed(f"{key}.{k}", v, item) for k, v in value.items()}
    options = args if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} must not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return value if int in options and isinstance(value, int) else float(value)
        if option is str and isinstance(value, str):
            return value
    names = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"{key} must be {names}, got {_show(value)}")
