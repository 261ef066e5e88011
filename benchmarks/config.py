"""Typed profiles (``profiles.toml``) and the fully resolved configuration of one run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import models
from models import variants
from models.registry import coerce

from .errors import UserError

PROFILES_FILE = Path(__file__).with_name("profiles.toml")
LINEAGES = ("he2019", "shen2021")  # the protocol's two code lineages (docs/protocol-and-metrics.md, "Lineages")
LINEAGE_TABLE = "lineages"  # [lineages.NAME] in profiles.toml: the values a lineage sets
# Profile fields added after runs were stored, with the value every earlier run had: a configuration
# without the field means that value, and a run at that value keeps the id it had before the field.
LATER_FIELDS = {"precision": "fp32", "lineage": "he2019", "min_train_batch": 0, "valid_iw_samples": 0}
# Profile fields that belong to the device, not to the run: a run keeps the profile's own value in its
# configuration (so its id, which always held it, stays), and the device decides what is used.
DEVICE_FIELDS = {"eval_memory_mb": "the IW-NLL's memory is the device's, not the run's: pass --eval-memory-mb MB "
                                   "to benchmarks.run, benchmarks.train or benchmarks.evaluate"}


@dataclass(frozen=True)
class Profile:
    """Every number of the training and evaluation protocol (protocol.md)."""

    name: str
    description: str
    max_len: int
    vocab_size: int
    train_docs: int
    valid_docs: int
    test_docs: int
    batching: str
    emb_dim: int
    enc_hidden: int
    dec_hidden: int
    nz: int
    dropout_in: float
    dropout_out: float
    init: str
    lineage: str
    precision: str
    optimizer: str
    lr: float
    momentum: float
    clip: float
    batch_size: int
    max_epochs: int
    kl_start: float
    warmup_epochs: float
    decay_patience: int
    decay_factor: float
    max_decays: int
    decay_min_epoch: int
    min_train_batch: int
    iw_samples: int
    valid_iw_samples: int
    eval_batch_size: int
    eval_memory_mb: int

    def __post_init__(self):
        checks = [
            (self.optimizer in ("sgd", "adam"), "optimizer must be 'sgd' or 'adam'"),
            (self.init in ("uniform", "default"), "init must be 'uniform' or 'default'"),
            (self.lineage in LINEAGES, f"lineage must be one of {', '.join(LINEAGES)}"),
            (0 <= self.min_train_batch <= self.batch_size,
             "min_train_batch must be in [0, batch_size] (0 = train on every batch)"),
            (self.precision in models.PRECISIONS, f"precision must be one of {', '.join(models.PRECISIONS)}"),
            (self.batching in ("length", "equal_length", "random", "resplit", "by_label"),
             "batching must be one of length, equal_length, random, resplit, by_label"),
            (min(self.max_len, self.vocab_size, self.train_docs, self.valid_docs, self.test_docs) >= 0,
             "max_len, vocab_size and *_docs must be >= 0 (0 = no limit)"),
            (self.vocab_size == 0 or self.vocab_size > 4, "vocab_size must exceed the 4 special tokens"),
            (min(self.emb_dim, self.enc_hidden, self.dec_hidden, self.nz) >= 1, "network sizes must be >= 1"),
            (0 <= self.dropout_in < 1 and 0 <= self.dropout_out < 1, "dropout must be in [0, 1)"),
            (self.lr > 0 and self.clip > 0 and self.momentum >= 0, "lr and clip must be > 0, momentum >= 0"),
            (self.batch_size >= 2 and self.eval_batch_size >= 2, "batch sizes must be >= 2"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
            (0 <= self.kl_start <= 1 and self.warmup_epochs >= 0, "kl_start must be in [0, 1], warmup_epochs >= 0"),
            (0 < self.decay_factor < 1 and self.decay_patience >= 1 and self.max_decays >= 0,
             "decay_factor must be in (0, 1), decay_patience >= 1, max_decays >= 0"),
            (self.iw_samples >= 1 and self.eval_memory_mb >= 1, "iw_samples and eval_memory_mb must be >= 1"),
            (self.valid_iw_samples >= 0, "valid_iw_samples must be >= 0 (0 = no validation IW-NLL per epoch)"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"profile {self.name!r}: {message}")

    def architecture(self, vocab_size: int) -> models.Architecture:
        return models.Architecture(vocab_size=vocab_size, emb_dim=self.emb_dim, enc_hidden=self.enc_hidden,
                                   dec_hidden=self.dec_hidden, nz=self.nz, dropout_in=self.dropout_in,
                                   dropout_out=self.dropout_out, init=self.init, precision=self.precision,
                                   lineage=self.lineage)

    def limit(self, field: str) -> int | None:
        """A cap of the data section (0 in the file means no limit)."""
        return getattr(self, field) or None


def profile_fields() -> dict[str, str]:
    return {f.name: f.type for f in dataclasses.fields(Profile) if f.name not in ("name", "description")}


def available_profiles() -> list[str]:
    with open(PROFILES_FILE, "rb") as fh:
        return [name for name in tomllib.load(fh) if name != LINEAGE_TABLE]


def lineage_values(lineage: str) -> dict:
    """The profile values that ``lineage`` sets over a profile's own ([lineages.NAME]; he2019: none)."""
    with open(PROFILES_FILE, "rb") as fh:
        return dict(tomllib.load(fh).get(LINEAGE_TABLE, {}).get(lineage, {}))


def _profile_table(name: str) -> dict:
    with open(PROFILES_FILE, "rb") as fh:
        table = tomllib.load(fh)
    if name not in table or name == LINEAGE_TABLE:
        raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(available_profiles())}")
    return table[name]


def method_defaults(profile: str, method: str) -> dict:
    """A profile's own defaults for one method's hyperparameters (``[PROFILE.methods.METHOD]``),
    e.g. fewer SA-VAE refinement steps at CPU scale; a row's values and ``--set`` win over them."""
    methods = _profile_table(profile).get("methods", {})
    unknown = sorted(set(methods) - set(models.METHODS))
    if unknown:
        raise UserError(f"{PROFILES_FILE.name}: [{profile}.methods.{unknown[0]}] names no registered method")
    return dict(methods.get(method, {}))


def load_profile(name: str, overrides: dict[str, object] | None = None) -> Profile:
    """The named profile of profiles.toml with ``overrides`` applied (strings are parsed).

    The profile's ``lineage`` (or an overriding one) sets its values over the profile's own
    (``[lineages.NAME]``); ``overrides`` win over both.
    """
    values = {k: v for k, v in _profile_table(name).items() if k != "methods"}
    values.update(lineage_values(str((overrides or {}).get("lineage", values.get("lineage", "he2019")))))
    fields = profile_fields()
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise UserError(f"unknown profile key {key!r}; profiles have: {', '.join(fields)}")
        values[key] = value
    missing = sorted(set(fields) - set(values))
    if missing:
        raise UserError(f"profile {name!r} in {PROFILES_FILE.name} lacks {', '.join(missing)}")
    typed = {k: coerce(v, fields[k], f"{name}.{k}") for k, v in values.items() if k in fields}
    return Profile(name=name, description=values.get("description", ""), **typed)


def split_overrides(model: str, settings: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``--set key=value`` items into profile and model hyperparameter overrides."""
    profile, hyper = {}, {}
    model_keys = models.registry.field_types(model)
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        if key in DEVICE_FIELDS:
            raise UserError(f"--set {key}: {DEVICE_FIELDS[key]}")
        if key in model_keys:
            hyper[key] = value
        elif key in profile_fields():
            profile[key] = value
        else:
            raise UserError(f"--set: unknown key {key!r}; {model} takes {', '.join(model_keys) or 'no hyperparameters'}, "
                            f"profiles take {', '.join(profile_fields())}")
    return profile, hyper


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers; its hash names the run."""

    model: str
    hyperparameters: dict
    dataset: str
    profile: Profile
    seed: int
    family: str | None = None  # a user corpus's family ("yahoo"/"yelp", --corpus-like); None for registered datasets

    def to_json(self) -> dict:
        value = {"model": self.model, "hyperparameters": self.hyperparameters, "dataset": self.dataset,
                 "profile": dataclasses.asdict(self.profile), "seed": self.seed}
        if self.family is not None:  # only runs on a corpus with a family have it: older run ids stand
            value["family"] = self.family
        return value

    @classmethod
    def from_json(cls, value: dict) -> "RunConfig":
        profile = value["profile"]
        overrides = {k: v for k, v in profile.items() if k not in ("name", "description")}
        for field, old in LATER_FIELDS.items():  # written before the field existed: its value then
            overrides.setdefault(field, old)
        return cls(value["model"], value["hyperparameters"], value["dataset"],
                   load_profile(profile["name"], overrides), value["seed"], value.get("family"))

    @property
    def run_id(self) -> str:
        identity = dict(self.to_json())
        identity["profile"] = {k: v for k, v in identity["profile"].items() if k != "description"}
        for field, old in LATER_FIELDS.items():  # runs at a later field's old value keep the ids they had
            if identity["profile"].get(field) == old:
                del identity["profile"][field]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        dataset = Path(self.dataset).name if ("/" in self.dataset or "\\" in self.dataset) else self.dataset
        return f"{dataset}-{self.model}-{self.profile.name}-s{self.seed}-{digest}"


def resolve(model: str, dataset: str, profile: str, seed: int, settings: list[str] | None = None,
            family: str | None = None) -> RunConfig:
    """Validate a run request into a RunConfig (one UserError line on any bad value).

    ``model`` is a method or a paper row such as ``scale_vae(1.1,1)`` or
    ``du_vae(0.6,0.8|0.5,0.8)`` (models/variants.py); ``--set`` values win over the row's.
    ``family`` ("yahoo"/"yelp") is the side a user corpus takes (``--corpus-like``); it is
    recorded in the configuration. Runs are identified by the resolved configuration, so
    two names for the same configuration share one run.
    """
    from . import data  # data is heavy to import; config is imported by light tools too

    variant = variants.parse(model)
    spec = data.get_dataset(dataset, family=family)
    family = spec.family
    profile_overrides, hyper_overrides = split_overrides(variant.method, settings or [])
    hp = models.hyperparameters(variant.method, **{**method_defaults(profile, variant.method),
                                                   **variant.hyperparameters(family), **hyper_overrides})
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    return RunConfig(variant.method, dataclasses.asdict(hp), dataset, load_profile(profile, profile_overrides), seed,
                     family if spec.scale == "user" else None)
