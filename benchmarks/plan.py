"""Experiments as data: expand ``benchmarks/experiments/*.toml`` into the runs they need.

An experiment file names its rows (a table of models/variants.toml or a list of
model names), its datasets per profile, its number of seeds, optional ``--set``
values per profile (``[settings.PROFILE]``, or ``[settings.PROFILE.DATASET]``
for one dataset), and an optional ``grid`` of further settings, one
configuration each (a grid entry's ``label`` names it in the tables instead of
its settings, e.g. a rung of the ladder study). A run is identified by its
resolved configuration and seed, so experiments that need the same run share it.

User corpora (``plan(..., datasets=[DIR, ...], corpus_like=FAMILY)``) replace an
experiment's datasets: its rows run on each corpus directory, with the bracketed
hyperparameters of the ``corpus_like`` side ("yahoo" or "yelp" of the paper's
``a | b``) and the experiment's settings for its own dataset of that family. An
experiment says what it needs of a corpus under ``[user_corpus]``: ``skip = "why"``
(it cannot run on one, e.g. the synthetic latent-space experiment) or ``labels =
true`` (every split must be labelled, e.g. Table 4's probe); otherwise it is left
out on that corpus, as :func:`corpus_skips` says in one line.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from models import variants

from .config import RunConfig, resolve
from .errors import UserError

EXPERIMENTS_DIR = Path(__file__).with_name("experiments")
KNOWN_KEYS = {"description", "rows", "seeds", "datasets", "settings", "grid", "user_corpus"}
CORPUS_KEYS = {"skip": str, "labels": bool}  # the [user_corpus] table of an experiment file
GRID_LABEL = "label"  # a grid entry's name in the tables (not a setting)
DEFAULT_CORPUS_LIKE = "yahoo"  # the paper's main dataset: the core experiment and Tables 3 and 5 are Yahoo's


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
    rule = spec.get("user_corpus", {})
    bad = [k for k in rule if k not in CORPUS_KEYS or not isinstance(rule[k], CORPUS_KEYS[k])] \
        if isinstance(rule, dict) else ["user_corpus"]
    if bad:
        raise UserError(f"{path.name}: [user_corpus] takes skip = \"why\" and labels = true|false, not {bad[0]!r}")
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


def corpus_skip(name: str, corpus: str) -> str | None:
    """Why experiment ``name`` does not run on the user corpus ``corpus``, or None when it does."""
    from . import data

    rule = load(name).get("user_corpus", {})
    if rule.get("skip"):
        return rule["skip"]
    if rule.get("labels"):
        unlabelled = [split for split, labelled in data.inspect_corpus(corpus).labelled.items() if not labelled]
        if unlabelled:
            files = ", ".join(f"{split}.txt" for split in unlabelled)
            return (f"it needs a label on every document (each line of train.txt, valid.txt and test.txt an integer "
                    f"label, a tab, then the text), and {files} {'has' if len(unlabelled) == 1 else 'have'} none")
    return None


def corpus_skips(experiments: list[str] | None, corpora: list[str]) -> list[str]:
    """One line per experiment left out on some of the corpora, saying why."""
    lines = []
    for name in experiments or available():
        reasons: dict[str, list[str]] = {}
        for corpus in dict.fromkeys(corpora):
            if (why := corpus_skip(name, corpus)) is not None:
                reasons.setdefault(why, []).append(corpus)
        lines += [f"{name}: skipped on {', '.join(where)}: {why}" for why, where in reasons.items()]
    return lines


def corpora_of(datasets: list[str] | None) -> list[str]:
    """The corpus directories among ``--datasets`` (none for registered names); a mix is one error line."""
    from . import data

    corpora = [d for d in datasets or [] if data.is_corpus(d)]
    if corpora and len(corpora) < len(datasets):
        names = [d for d in datasets if d not in corpora]
        raise UserError(f"--datasets mixes registered datasets ({', '.join(names)}) with corpus directories "
                        f"({', '.join(corpora)}); run them apart: names keep the experiments' own datasets, "
                        "directories replace them")
    return list(dict.fromkeys(corpora))


def stand_in(datasets: list[str], family: str) -> str | None:
    """The experiment's own dataset of ``family``: its settings are the ones a corpus of that family takes."""
    from . import data

    return next((d for d in datasets if data.get_dataset(d).family == family), None)


def check_lengths(planned: list[PlannedRun]) -> None:
    """A profile's max_len drops longer documents: a corpus split left with none is one error line
    now, not a failure of every run later."""
    from . import data

    for dataset, profile in dict.fromkeys((p.dataset, p.config.profile) for p in planned):
        facts = data.inspect_corpus(dataset)
        for split, shortest in facts.shortest.items():
            if profile.max_len and shortest > profile.max_len:
                raise UserError(f"profile {profile.name} keeps documents of at most {profile.max_len} tokens "
                                f"(max_len), and every document of {facts.path / (split + '.txt')} is longer "
                                f"(shortest: {shortest}); use --profile paper (no limit) or add shorter documents")


def parse_seeds(text: str | None) -> int | slice | None:
    """``--seeds N`` (the first N seeds of each experiment) or ``--seeds FROM:TO`` (seeds FROM to TO-1, as a
    Python slice: one machine takes ``--seeds 3``, another ``--seeds 3:5``, and the stores add up)."""
    if text is None:
        return None
    first, colon, last = str(text).strip().partition(":")
    try:
        bounds = (int(first), int(last)) if colon else (0, int(first))
    except ValueError:
        bounds = None
    if bounds is None or bounds[0] < 0 or bounds[1] <= bounds[0]:
        raise UserError(f"--seeds takes N >= 1 (the first N seeds) or FROM:TO with 0 <= FROM < TO "
                        f"(seeds FROM to TO-1), got {text!r}")
    return slice(*bounds) if colon else bounds[1]


def seeds_of(count: int, seeds: int | slice | None) -> range:
    """The seeds of an experiment with ``count`` seeds that a ``--seeds`` selection keeps."""
    if seeds is None:
        return range(count)
    return range(count)[seeds] if isinstance(seeds, slice) else range(min(seeds, count))


def expand(name: str, profile: str, seeds: int | slice | None = None, corpora: list[str] | None = None,
           corpus_like: str | None = None) -> list[PlannedRun]:
    """Every run of an experiment under a profile (``seeds``: the first N seeds, or a slice of them); with
    ``corpora``, on those user corpora instead of its datasets, as ``corpus_like`` ("yahoo"/"yelp") says."""
    spec = load(name)
    datasets = spec.get("datasets", {}).get(profile)
    if not datasets:
        raise UserError(f"experiment {name!r} names no datasets for profile {profile!r}; add them under [datasets]")
    chosen = seeds_of(spec.get("seeds", 5), seeds)
    grid = spec.get("grid", [{}])
    family = corpus_like or DEFAULT_CORPUS_LIKE
    if corpora:  # (dataset, the dataset whose per-dataset settings it takes)
        targets = [(c, stand_in(datasets, family)) for c in corpora if corpus_skip(name, c) is None]
    else:
        targets = [(d, d) for d in datasets]
    planned = []
    for row in rows_of(spec, name):
        for dataset, settings_of in targets:
            for entry in grid:
                entry = dict(entry)
                label = str(entry.pop(GRID_LABEL, "")) or ",".join(f"{k}={v}" for k, v in entry.items())
                values = {**settings_for(spec, profile, settings_of), **entry}
                for seed in chosen:
                    config = resolve(row, dataset, profile, seed, as_settings(values), family if corpora else None)
                    planned.append(PlannedRun(name, row, dataset, label, seed, config))
    return planned


def plan(profile: str, experiments: list[str] | None = None, seeds: int | slice | None = None,
         models: list[str] | None = None, datasets: list[str] | None = None,
         corpus_like: str | None = None) -> list[PlannedRun]:
    """The runs of several experiments; ``models`` keeps rows whose name or method is listed,
    ``datasets`` the runs on those datasets. Directories in ``datasets`` are user corpora: they
    replace the experiments' datasets, taking the ``corpus_like`` side (default yahoo)."""
    from . import data

    data.registry.check_family(corpus_like)  # an unknown family is one line, before anything is read
    corpora = corpora_of(datasets)
    if corpus_like is not None and not corpora:
        raise UserError(f"--corpus-like {corpus_like} is for user corpora: give their directories with --datasets "
                        "(a registered dataset has its own family)")
    planned = []
    if corpora:
        for corpus in corpora:
            data.inspect_corpus(corpus)  # a missing or malformed file is one line, before anything is planned
        for name in experiments or available():
            planned += expand(name, profile, seeds, corpora, corpus_like)
        if not planned:
            raise UserError("--datasets: none of the selected experiments runs on a user corpus ("
                            + "; ".join(corpus_skips(experiments, corpora)) + ")")
        check_lengths(planned)
        datasets = None  # the corpora are the plan's datasets: nothing to filter
    else:
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
