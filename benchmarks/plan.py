"""Experiments as data: expand ``benchmarks/experiments/*.toml`` into the runs they need.

An experiment file names its rows (a table of models/variants.toml or a list of
model names), its datasets per profile, its number of seeds, optional ``--set``
values per profile (``[settings.PROFILE]``, or ``[settings.PROFILE.DATASET]``
for one dataset), and an optional ``grid`` of further settings, one
configuration each. A run is identified by its resolved configuration and
seed, so experiments that need the same run share it.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from models import variants

from .config import RunConfig, resolve
from .errors import UserError

EXPERIMENTS_DIR = Path(__file__).with_name("experiments")
KNOWN_KEYS = {"description", "rows", "seeds", "datasets", "settings", "grid"}


@dataclass(frozen=True)
class PlannedRun:
    experiment: str
    row: str  # the model as the experiment names it, e.g. "scale_vae(1.1,1|1.1,7)"
    dataset: str
    setting: str  # the grid entry, e.g. "batching=random" ("" without a grid)
    seed: int
    config: RunConfig

    @property
    def run_id(self) -> str:
        return self.config.run_id


def split_list(text: str | None) -> list[str] | None:
    """Split a comma-separated option, keeping commas inside parentheses: 'vae,mae(1,0.2)'."""
    if not text:
        return None
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    return items + [current.strip()] if current.strip() else items


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def load(name: str) -> dict:
    path = EXPERIMENTS_DIR / f"{name}.toml"
    if not path.exists():
        raise UserError(f"unknown experiment {name!r}; choose from: {', '.join(available())}")
    try:
        with open(path, "rb") as fh:
            spec = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: malformed TOML ({error}); fix the file") from None
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        raise UserError(f"{path.name}: unknown key {sorted(unknown)[0]!r}; experiment files take {', '.join(sorted(KNOWN_KEYS))}")
    return spec


def rows_of(spec: dict, name: str) -> list[str]:
    rows = spec.get("rows")
    if isinstance(rows, str):
        tables = variants.table_rows()
        if rows not in tables:
            raise UserError(f"{name}.toml: rows = {rows!r} is not a table of models/variants.toml ({', '.join(tables)})")
        return tables[rows]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, str) for r in rows):
        raise UserError(f"{name}.toml: rows must be a table name of models/variants.toml or a list of model names")
    return rows


def settings_for(spec: dict, profile: str, dataset: str) -> dict:
    """The experiment's --set values for one profile and dataset (dataset-specific ones win)."""
    table = spec.get("settings", {}).get(profile, {})
    shared = {k: v for k, v in table.items() if not isinstance(v, dict)}
    return {**shared, **table.get(dataset, {})}


def as_settings(values: dict) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


def expand(name: str, profile: str, seeds: int | None = None) -> list[PlannedRun]:
    """Every run of an experiment under a profile (``seeds``: only the first N seeds)."""
    spec = load(name)
    datasets = spec.get("datasets", {}).get(profile)
    if not datasets:
        raise UserError(f"experiment {name!r} names no datasets for profile {profile!r}; add them under [datasets]")
    count = spec.get("seeds", 5) if seeds is None else min(seeds, spec.get("seeds", 5))
    grid = spec.get("grid", [{}])
    planned = []
    for row in rows_of(spec, name):
        for dataset in datasets:
            for entry in grid:
                label = ",".join(f"{k}={v}" for k, v in entry.items())
                values = {**settings_for(spec, profile, dataset), **entry}
                for seed in range(count):
                    config = resolve(row, dataset, profile, seed, as_settings(values))
                    planned.append(PlannedRun(name, row, dataset, label, seed, config))
    return planned


def plan(profile: str, experiments: list[str] | None = None, seeds: int | None = None,
         models: list[str] | None = None, datasets: list[str] | None = None) -> list[PlannedRun]:
    """The runs of several experiments; ``models`` keeps rows whose name or method is listed,
    ``datasets`` the runs on those datasets."""
    planned = []
    for name in experiments or available():
        planned += expand(name, profile, seeds)
    if datasets:
        unknown = [d for d in datasets if not any(p.dataset == d for p in planned)]
        if unknown:
            raise UserError(f"--datasets: {unknown[0]!r} is used by none of the selected experiments")
        planned = [p for p in planned if p.dataset in datasets]
    if models:
        unknown = [m for m in models if not any(p.row == m or p.config.model == m for p in planned)]
        if unknown:
            raise UserError(f"--models: {unknown[0]!r} is in none of the selected experiments")
        planned = [p for p in planned if p.row in models or p.config.model in models]
    return planned


def unique_runs(planned: list[PlannedRun]) -> list[RunConfig]:
    """One configuration per run id, in plan order."""
    seen: dict[str, RunConfig] = {}
    for p in planned:
        seen.setdefault(p.run_id, p.config)
    return list(seen.values())
