"""Named variants: the rows of the paper's tables, written as the paper writes them.

Grammar: ``method[*][(v1, v2, ... [| w1, w2, ...])]``

- ``*`` turns KL annealing off (the paper's starred rows, e.g. ``scale_vae*``);
- the values fill the method's ``positional`` hyperparameters in order
  (``scale_vae(1.1,1)`` = des_std 1.1, f_epo 1; ``none`` for an absent value);
- ``a | b`` gives the values on Yahoo-like and on Yelp-like datasets (the
  dataset's ``family``), as the paper's Table 1 does: ``du_vae(0.6,0.8|0.5,0.8)``.

``variants.toml`` lists the rows of each table of the paper; ``python -m models``
prints them resolved.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .registry import method

FAMILIES = ("yahoo", "yelp")  # the order of the paper's "a | b"
ROWS_FILE = Path(__file__).with_name("variants.toml")
PATTERN = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(\*?)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class Variant:
    name: str
    method: str
    fixed: dict  # hyperparameters for every dataset
    per_family: dict | None  # {family: hyperparameters} when the paper gives "a | b"

    def hyperparameters(self, family: str | None) -> dict:
        """The hyperparameters on a dataset of this family."""
        if self.per_family is None:
            return dict(self.fixed)
        if family not in self.per_family:
            raise UserError(f"variant {self.name!r} has different values on {' and '.join(FAMILIES)} datasets; "
                            f"this dataset is neither: name one side, e.g. {self.method}({_first_group(self.name)})")
        return {**self.fixed, **self.per_family[family]}


def _first_group(name: str) -> str:
    return name[name.index("(") + 1:name.index("|")].strip()


def _value(text: str, spec: str):
    text = text.strip()
    if text.lower() == "none":
        return None
    try:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:
        raise UserError(f"model {spec!r}: {text!r} is not a number") from None


def parse(spec: str) -> Variant:
    """A variant from its name; a plain method name is the method with its defaults."""
    match = PATTERN.match(spec)
    if not match:
        raise UserError(f"cannot read model {spec!r}; write a method name, optionally with the paper's "
                        "bracketed values, e.g. scale_vae(1.1,1) or du_vae(0.6,0.8|0.5,0.8)")
    name, star, inside = match.groups()
    cls = method(name)
    fixed = {"anneal": False} if star else {}
    if star and not any(f == "anneal" for f in cls.Hyperparameters.__dataclass_fields__):
        raise UserError(f"{name} has no KL annealing to turn off with '*'")
    if inside is None or not inside.strip():
        return Variant(spec.strip(), name, fixed, None)
    groups = [g.split(",") for g in inside.split("|")]
    if len(groups) > len(FAMILIES):
        raise UserError(f"model {spec!r}: at most one '|' (values on Yahoo | values on Yelp)")
    for values in groups:
        if len(values) > len(cls.positional):
            raise UserError(f"model {spec!r}: {name} takes at most {len(cls.positional)} bracketed values "
                            f"({', '.join(cls.positional) or 'none'})")
    assigned = [dict(zip(cls.positional, (_value(v, spec) for v in values))) for values in groups]
    if len(assigned) == 1:
        return Variant(spec.strip(), name, {**fixed, **assigned[0]}, None)
    return Variant(spec.strip(), name, fixed, dict(zip(FAMILIES, assigned)))


def table_rows() -> dict[str, list[str]]:
    """{table: [variant names]} from variants.toml."""
    with open(ROWS_FILE, "rb") as fh:
        return {table: entry["rows"] for table, entry in tomllib.load(fh).items()}


def describe_rows() -> str:
    """Every row of every table in variants.toml with its resolved hyperparameters."""
    import dataclasses

    from .registry import hyperparameters

    lines = []
    for table, rows in table_rows().items():
        lines.append(f"\n{table}:")
        for row in rows:
            variant = parse(row)
            sides = FAMILIES if variant.per_family else (None,)
            resolved = []
            for family in sides:
                hp = dataclasses.asdict(hyperparameters(variant.method, **variant.hyperparameters(family)))
                text = ", ".join(f"{k}={v}" for k, v in hp.items()) or "-"
                resolved.append(f"{family}: {text}" if family else text)
            lines.append(f"  {row:<26} {' | '.join(resolved)}   [{method(variant.method).citation}]")
    return "\n".join(lines)
