"""Declared parameters: the type and range of every method `[params]` field and dataset `-O` option.

A backend declares its fields in `Method.known_params` and a dataset its options in
`Dataset.options_schema`, each a mapping of name to `Param` (or to a bare type such as `int`); a
backend may still give a plain tuple of names, which checks the names only. `check_params` is the
one place that refuses a value: one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import BenchError

#: a Param with this default must be given
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
#: a Param with this default may be left out, and then stays out of the checked values
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
          dict: "a table"}


@dataclass(frozen=True)
class Param:
    """One parameter: its type (a type or a tuple of types; `object` for any), default, bounds and choices.

    `default` is the value a left-out parameter takes (`REQUIRED`: it must be given; `ABSENT`, the
    default: it stays left out).
    `ge`/`le` are inclusive bounds and `gt` an exclusive lower bound, for numbers; `choices` lists
    the allowed values; `items` the type of a list's elements. An int is accepted where a float is
    declared (and becomes a float).
    """

    kind: type | tuple[type, ...] = object
    default: Any = ABSENT
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple = ()
    items: type | tuple[type, ...] | None = None
    help: str = ""

    @property
    def kinds(self) -> tuple[type, ...]:
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def expected(self) -> str:
        """What the parameter accepts, in words ("an integer >= 1", "one of a, b")."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        text = " or ".join(_NAMES.get(k, k.__name__) for k in self.kinds if k is not object) or "any value"
        if self.items is not None:
            inner = self.items if isinstance(self.items, tuple) else (self.items,)
            text += " of " + " or ".join(_NAMES.get(k, k.__name__)[2:].lstrip() + "s" for k in inner)
        if self.ge is not None and self.le is not None and self.gt is None:
            if self.kinds == (int,):
                return f"{text} in {_number(self.ge)}..{_number(self.le)}"
            return f"{text} in [{_number(self.ge)}, {_number(self.le)}]"
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {_number(self.gt)}")
        if self.ge is not None:
            bounds.append(f">= {_number(self.ge)}")
        if self.le is not None:
            bounds.append(f"<= {_number(self.le)}")
        return f"{text} {' and '.join(bounds)}" if bounds else text

    def convert(self, value: Any, text: bool = False) -> Any:
        """The value checked (and, with `text`, parsed from a command-line string); ValueError if not allowed."""
        if text and isinstance(value, str) and str not in self.kinds:
            value = _parse(value.strip(), self.kinds)
        if object not in self.kinds:
            if float in self.kinds and _is_int(value) and int not in self.kinds:
                value = float(value)
            ok = any(_is_int(value) if k is int else isinstance(value, k) and not (k is float and isinstance(value, bool))
                     for k in self.kinds)
            if not ok:
                raise ValueError(self.expected())
        if self.items is not None and isinstance(value, list):
            inner = Param(self.items)
            try:
                value = [inner.convert(v) for v in value]
            except ValueError:
                raise ValueError(self.expected()) from None
        if self.choices and value not in self.choices:
            raise ValueError(self.expected())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(self.expected())
            if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le)):
                raise ValueError(self.expected())
        return value


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(text: str, kinds: tuple[type, ...]) -> Any:
    """A command-line string as the first of `kinds` it parses as (itself when none does)."""
    for kind in kinds:
        if kind is int:
            try:
                return int(text)
            except ValueError:
                continue
        if kind is float:
            try:
                return float(text)
            except ValueError:
                continue
        if kind is bool and text.lower() in ("true", "false"):
            return text.lower() == "true"
    return text


def schema_of(declared: Mapping[str, Any] | tuple | list | None) -> dict[str, Param] | None:
    """A schema from what a backend or dataset declares: a mapping of name to Param or type, or a
    sequence of names (any value); None means nothing is declared (nothing is checked)."""
    if declared is None:
        return None
    if isinstance(declared, Mapping):
        return {str(k): v if isinstance(v, Param) else Param(v) for k, v in declared.items()}
    return {str(name): Param() for name in declared}


def check_params(values: Mapping[str, Any], schema: Mapping[str, Param], source: str, where: str = "params.",
                 text: bool = False, noun: str = "field") -> dict[str, Any]:
    """The values checked against `schema`, defaults filled in; BenchError (one line) for an unknown
    field, a missing one or a value of the wrong type or out of range.

    Messages name a field as `where` + its name (`params.grid = 0 ...`); with `where` empty, as
    `noun` and the name, `key=value` (`option seed=-1 ...`, for command-line options). `text`: values
    given as strings on a command line are parsed to the declared type first.
    """
    label, sep = (where, " = ") if where else (f"{noun} ", "=")
    for key in values:
        if key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise BenchError(f"{source}: unknown {noun} {where + key!r} (known: {known})")
    out: dict[str, Any] = {}
    for key, param in schema.items():
        if key not in values:
            if param.default is REQUIRED:
                raise BenchError(f"{source}: missing {label}{key} ({param.expected()})")
            if param.default is not ABSENT:
                out[key] = param.default
            continue
        value = values[key]
        try:
            out[key] = param.convert(value, text)
        except ValueError:
            shown = value if text and isinstance(value, str) else repr(value)
            raise BenchError(f"{source}: {label}{key}{sep}{shown} is not {param.expected()}") from None
    return out


__all__ = ["ABSENT", "Param", "REQUIRED", "check_params", "schema_of"]
