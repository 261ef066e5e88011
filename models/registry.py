"""The method registry: ``build(name, arch, **hyperparameters)``."""
from __future__ import annotations

import dataclasses
import typing

from .errors import UserError

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a method available under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def method(name: str) -> type:
    if name not in METHODS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(METHODS))} (python -m models lists them)")
    return METHODS[name]


TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def coerce(value, annotation, key: str):
    """Check a value against a field's type; command-line strings are parsed first.

    Types are bool, int, float, str, or one of them "| None" (written "none" on the command line).
    """
    if not isinstance(annotation, str):  # a real type or union, when the module has no `from __future__ import annotations`
        annotation = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    if annotation.endswith(" | None"):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        annotation = annotation[: -len(" | None")]
    kind = TYPES[annotation]
    if isinstance(value, str) and kind is not str:
        try:
            value = {"true": True, "false": False}[value.lower()] if kind is bool else kind(value)
        except (KeyError, ValueError):
            raise UserError(f"{key} must be of type {kind.__name__}, got {value!r}") from None
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise UserError(f"{key} must be of type {kind.__name__}, got {value!r}")
    return value


def hyperparameters(name: str, **values):
    """The method's typed hyperparameters, validated; unknown keys fail with one line."""
    cls = method(name)
    fields = {f.name: f for f in dataclasses.fields(cls.Hyperparameters)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{name} has no hyperparameter {unknown[0]!r}; it takes: {', '.join(fields) or 'none'}")
    typed = {k: coerce(v, fields[k].type, f"{name}.{k}") for k, v in values.items()}
    return cls.Hyperparameters(**typed)


def build(name: str, arch, **values):
    """Instantiate a registered method with validated hyperparameters."""
    cls = method(name)
    return cls(arch, hyperparameters(name, **values))


def describe() -> str:
    """A table of every registered method: name, hyperparameters, citation."""
    rows = [(n, c.describe_hyperparameters() or "-", c.citation) for n, c in sorted(METHODS.items())]
    widths = [max(len(r[i]) for r in rows + [("name", "hyperparameters", "citation")]) for i in range(2)]
    lines = [f"{'name':<{widths[0]}}  {'hyperparameters':<{widths[1]}}  citation"]
    lines += [f"{n:<{widths[0]}}  {h:<{widths[1]}}  {c}" for n, h, c in rows]
    return "\n".join(lines)


def field_types(name: str) -> dict[str, typing.Any]:
    return {f.name: f.type for f in dataclasses.fields(method(name).Hyperparameters)}
