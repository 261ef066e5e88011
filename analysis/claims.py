"""The paper's qualitative claims (``analysis/claim_list.py``), checked one by one on the reproduced numbers.

A verdict says exactly what the evidence says (the issue "make the paper-claim verdicts say exactly
what the evidence says"):

- ``holds``: p < ALPHA in the paper's direction; ``contradicted``: p < ALPHA the other way;
- ``not shown``: no significant difference; ``Verdict.direction`` (and the evidence) says which way
  the means lean: "paper's direction", "other direction" or "no difference";
- ``no verdict: at the estimator's ceiling``: a compared mean within ``CEILING_MARGIN`` of its
  estimator's ceiling (MI: log N of the test split; there the estimate says how many documents were
  scored, not how much information the code carries); ``no verdict: one seed``: a single finished
  seed on a side (no spread to test against; the direction is still given);
- ``not run``: no finished run of a compared cell;
- ``holds by construction``: a claim the method's definition guarantees (``Claim.by_construction``,
  e.g. BN-VAE(0.0, 0.7)'s MI and AU), when the numbers agree; when they do not, the ordinary verdict
  stands and the evidence says the implementation is in question.

How each kind of claim is tested (two-sided, over seeds, scipy):

- two rows (``less``/``greater``): Welch's t-test;
- the best row (``lowest``/``highest``): Welch's t-test against the best of its rivals (every other
  row, or with ``among="baselines"`` the rows of other methods);
- a bound (``at_most``/``at_least``): a one-sample t-test of the seeds against the bound.

When every compared seed is identical there is no spread and no test: the means decide (a bound
counts as met when the mean equals it, as "AU <= 1" reads).

A quantity with two conventions (``claim_readings.CONVENTIONS``) is checked under each, side by
side: ``Verdict.verdict`` under the tables' convention, the paper's (NLL under the model's own
prior, MI on the posterior the decoder reads, i.e. the scaled one for Scale-VAE, AU of the encoder's
means), ``Verdict.others`` under the other; Table 5's diversity also on the uncapped samples alone.
A Table 5 claim's evidence says how many samples hit the length cap; a Table 2 claim's whether the
timed runs had the machine to themselves. These readings need the runs (``check_all(tables, runs)``).

On a user corpus (``--datasets DIR``) the claims are checked on the corpus: a claim about Yahoo (or
Yelp) on each corpus run as that family (``--corpus-like``), a claim about one dataset (Tables 4 and
5) on each corpus, named in its text; a claim about the family no corpus took is left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from models import variants

from . import claim_readings
from .claim_list import CLAIMS, SCALE_BEST, Claim  # noqa: F401  (the claims' public home is here too)
from .tables import Table

ALPHA = 0.05
CEILING_MARGIN = 0.1  # nats: a whole-split MI this close to log N is at its ceiling

HOLDS, CONTRADICTED, NOT_SHOWN, NOT_RUN = "holds", "contradicted", "not shown", "not run"
AT_CEILING, ONE_SEED = "no verdict: at the estimator's ceiling", "no verdict: one seed"
BY_CONSTRUCTION = "holds by construction"
FAILS = CONTRADICTED  # the former name (it also covered "not shown"); kept for older callers
MARKS = {HOLDS: "✅ holds", CONTRADICTED: "❌ contradicted", NOT_SHOWN: "➖ not shown",
         AT_CEILING: f"⚠️ {AT_CEILING}", ONE_SEED: f"⚠️ {ONE_SEED}", NOT_RUN: "— not run",
         BY_CONSTRUCTION: "🔧 holds by construction"}
PAPERS_WAY, OTHER_WAY, NO_DIFFERENCE = "paper's direction", "other direction", "no difference"


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str  # one of MARKS
    evidence: str
    direction: str = ""  # where the means lean: PAPERS_WAY, OTHER_WAY or NO_DIFFERENCE ("" when none were compared)
    convention: str = ""  # the convention of the numbers, for a quantity with two ("" otherwise)
    others: tuple[Verdict, ...] = ()  # the same claim under the quantity's other convention(s)

    @property
    def mark(self) -> str:
        """The verdict as shown: MARKS' form, with the direction of a "not shown" or one-seed verdict."""
        return mark_of(self.verdict, self.direction)

    @property
    def conventions(self) -> dict[str, Verdict]:
        """Convention -> verdict, the tables' (the paper's) first; {"": self} for a quantity with one."""
        return {self.convention: self, **{other.convention: other for other in self.others}}


def mark_of(verdict: str, direction: str = "") -> str:
    """A verdict as shown: MARKS' form, with the direction of a "not shown" or one-seed verdict."""
    leaning = verdict in (NOT_SHOWN, ONE_SEED) and direction
    return f"{MARKS[verdict]} ({direction})" if leaning else MARKS[verdict]


def welch(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value (nan with fewer than two seeds on a side or no variance)."""
    if a.size < 2 or b.size < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def one_sample(values: np.ndarray, bound: float) -> float:
    """Two-sided one-sample t-test p-value of ``values`` against ``bound`` (nan without spread)."""
    if values.size < 2 or values.std() == 0:
        return math.nan
    return float(stats.ttest_1samp(values, bound).pvalue)


def leaning(difference: float, paper_wants_negative: bool) -> str:
    if difference == 0:
        return NO_DIFFERENCE
    return PAPERS_WAY if (difference < 0) == paper_wants_negative else OTHER_WAY


def decide(p: float, direction: str, seeds: int, no_spread: bool, tie: str = NOT_SHOWN) -> str:
    """The verdict of a test: ``seeds`` is the fewest on a side; without spread the means decide (``tie``
    when they are equal)."""
    if seeds < 2:
        return ONE_SEED
    if no_spread:
        return {PAPERS_WAY: HOLDS, OTHER_WAY: CONTRADICTED}.get(direction, tie)
    if p < ALPHA and direction != NO_DIFFERENCE:
        return HOLDS if direction == PAPERS_WAY else CONTRADICTED
    return NOT_SHOWN


def described(label: str, direction: str) -> str:
    return f"{direction}, not significant" if label == NOT_SHOWN and direction != NO_DIFFERENCE else direction


def test_words(n: int, no_spread: bool, tested: str) -> str:
    """How the evidence was tested: ``tested`` (the test and its p), or why there is no test."""
    if n < 2:
        return "one seed, no test"
    return "all seeds equal, no test" if no_spread else tested


def compare(a: np.ndarray, b: np.ndarray, want_less: bool) -> tuple[str, str, str]:
    """(verdict, evidence, direction) of "mean of a < (or >) mean of b" by Welch's t-test."""
    direction = leaning(a.mean() - b.mean(), want_less)
    p = welch(a, b)
    no_spread = a.std() == 0 and b.std() == 0
    label = decide(p, direction, min(a.size, b.size), no_spread)
    test = test_words(min(a.size, b.size), no_spread, f"Welch p={p:.3g}")
    evidence = f"{a.mean():.3g} vs {b.mean():.3g} (n={a.size}/{b.size}, {test}); {described(label, direction)}"
    return label, evidence, direction


def against_bound(values: np.ndarray, bound: float, at_most: bool, source: str = "") -> tuple[str, str, str]:
    """(verdict, evidence, direction) of "mean <= (or >=) bound" by a one-sample t-test."""
    direction = leaning(values.mean() - bound, at_most)
    p, no_spread = one_sample(values, bound), values.std() == 0
    label = decide(p, direction, values.size, no_spread, tie=HOLDS)
    test = test_words(values.size, no_spread, f"one-sample t-test p={p:.3g}")
    where = f"bound {bound:g}" + (f" ({source})" if source else "")
    return label, f"mean {values.mean():.3g} (n={values.size}, {test}), {where}; {described(label, direction)}", direction


def method_of(row: str) -> str:
    return variants.parse(row.split("*quoted")[0]).method


def rivals_of(claim: Claim, table: Table) -> dict[str, np.ndarray]:
    """The rows a lowest/highest claim is checked against, with their values."""
    rows = [r for r in table.rows if r != claim.row]
    if claim.among == "baselines":
        rows = [r for r in rows if method_of(r) != method_of(claim.row)]
    return {r: table.cell(r, claim.column) for r in rows if table.cell(r, claim.column).size}


def at_ceiling(claim: Claim, table: Table, compared: dict[str, np.ndarray]) -> Verdict | None:
    """No verdict when a compared mean sits at the column's estimator ceiling."""
    ceiling = table.ceilings.get(claim.column)
    if ceiling is None:
        return None
    capped = {r: v.mean() for r, v in compared.items() if v.mean() >= ceiling - CEILING_MARGIN}
    if not capped:
        return None
    return Verdict(claim, AT_CEILING, ", ".join(f"{r} {m:.3g}" for r, m in capped.items())
                   + f" at or above the estimator's ceiling less {CEILING_MARGIN:g} (ceiling log N of the test split"
                   + f" = {ceiling:.3g}; the sampled estimate can pass it)")


def tested(claim: Claim, table: Table | None) -> Verdict:
    """The claim's verdict on ``table``'s numbers, by the test of its kind (the module docstring)."""
    values = table.cell(claim.row, claim.column) if table else np.array([])
    if not values.size:
        return Verdict(claim, NOT_RUN, "no finished run")
    if claim.kind in ("at_most", "at_least"):
        if (capped := at_ceiling(claim, table, {claim.row: values})) is not None:
            return capped
        return Verdict(claim, *against_bound(values, claim.bound, claim.kind == "at_most", claim.bound_source))
    if claim.kind in ("less", "greater"):
        other = table.cell(claim.other, claim.column)
        if not other.size:
            return Verdict(claim, NOT_RUN, f"no finished run of {claim.other}")
        if (capped := at_ceiling(claim, table, {claim.row: values, claim.other: other})) is not None:
            return capped
        return Verdict(claim, *compare(values, other, claim.kind == "less"))
    # lowest / highest: the row's mean is the best, and significantly better than the runner-up
    rivals = rivals_of(claim, table)
    if not rivals:
        return Verdict(claim, NOT_RUN, "no other row to compare with")
    pick = min if claim.kind == "lowest" else max
    runner_up = pick(rivals, key=lambda r: rivals[r].mean())
    if (capped := at_ceiling(claim, table, {claim.row: values, runner_up: rivals[runner_up]})) is not None:
        return capped
    label, evidence, direction = compare(values, rivals[runner_up], claim.kind == "lowest")
    rival = "baseline" if claim.among == "baselines" else "rival"
    return Verdict(claim, label, f"{evidence}; best {rival} {runner_up}", direction)


def check(claim: Claim, table: Table | None) -> Verdict:
    """``tested``, with a claim that holds by construction marked so (when the numbers agree)."""
    verdict = tested(claim, table)
    why = claim.by_construction
    if not why or verdict.verdict in (NOT_RUN, AT_CEILING):
        return verdict
    if verdict.verdict == HOLDS or verdict.direction == PAPERS_WAY:
        return replace(verdict, verdict=BY_CONSTRUCTION, evidence=f"{why}; {verdict.evidence}")
    return replace(verdict, evidence=f"{verdict.evidence}; yet it holds by construction ({why}): "
                                     "check the implementation")


def on_corpora(claim: Claim, table: Table | None) -> list[Claim]:
    """The claim as it reads on a table's user corpora (one per corpus column it applies to), or as it is
    for a table of the paper's datasets."""
    if table is not None and table.skipped:
        return []  # its experiment does not run on the corpus (the table says why)
    if table is None or not any(c.corpus for c in table.columns):
        return [claim]
    family, metric = next(((f, claim.column[len(f) + 1:]) for f in variants.FAMILIES
                           if claim.column.startswith(f + "_")), (None, claim.column))
    found = []
    for column in table.columns:
        if column.corpus and (column.metric or column.key) == metric and family in (None, column.family):
            text = claim.text.replace(" on Yahoo", f" on {column.corpus}").replace(" on Yelp", f" on {column.corpus}")
            found.append(replace(claim, column=column.key,
                                 text=text if text != claim.text else f"{claim.text} (on {column.corpus})"))
    return found


def with_readings(claim: Claim, table: Table | None, readings: claim_readings.Readings | None) -> Verdict:
    """The claim's verdict under the tables' convention, its other conventions' beside it, and the
    context its evidence owes (capped samples, shared machines) when ``readings`` has the runs."""
    verdict = check(claim, table)
    convention, others = claim_readings.conventions(claim.table, claim_readings.metric_of(table, claim.column))
    verdict = replace(verdict, convention=convention)
    if readings is None:
        return verdict
    alternates = []
    for name in others:
        alternate, note = readings.alternate(name, claim, table)
        reading = check(claim, alternate) if alternate is not None else Verdict(claim, NOT_RUN, note)
        if alternate is not None and note and reading.verdict != NOT_RUN:
            reading = replace(reading, evidence=f"{reading.evidence}; {note}")
        alternates.append(replace(reading, convention=name))
    context = readings.context(claim, table)
    return replace(verdict, evidence=f"{verdict.evidence}; {context}" if context else verdict.evidence,
                   others=tuple(alternates))


def check_all(tables: dict[str, Table], runs: pd.DataFrame | None = None) -> list[Verdict]:
    """Every claim's verdict on the built tables; with ``runs`` (``analysis.collect.collect``'s frame)
    also under its quantity's other convention and with the context of Tables 2 and 5."""
    readings = claim_readings.Readings(runs) if runs is not None else None
    return [with_readings(c, tables.get(claim.table), readings)
            for claim in CLAIMS for c in on_corpora(claim, tables.get(claim.table))]
