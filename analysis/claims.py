"""The paper's qualitative claims, checked one by one on the reproduced numbers.

Each claim is data: the table, the cells it compares, and how. A claim that
compares two methods is decided by a Welch t-test over seeds (scipy): it holds
when the difference has the claimed sign and p < ALPHA. A claim about one
cell compares its mean with a threshold. A claim whose cells have no finished
run is "not run". A claim on a column whose estimator has a ceiling (MI: log N
of the test split) gets no verdict when a compared mean sits within
``CEILING_MARGIN`` of it: the estimate there says how many documents were
scored, not how much information the code carries. A comparison with a single
finished seed on either side gets no verdict either (nothing to test against).

On a user corpus (``--datasets DIR``) the claims are checked on the corpus: a
claim about Yahoo (or Yelp) on each corpus run as that family (``--corpus-like``),
a claim about one dataset (Tables 4 and 5) on each corpus, named in its text; a
claim about the family no corpus took is left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from models import variants

from .tables import Table

ALPHA = 0.05
HOLDS, FAILS, NOT_RUN, AT_CEILING = "holds", "does not hold", "not run", "no verdict: at the estimator's ceiling"
ONE_SEED = "no verdict: one seed"  # a comparison with one seed on a side has no spread to test against
CEILING_MARGIN = 0.1  # nats: a whole-split MI this close to log N is at its ceiling
SCALE_BEST = "scale_vae(1.1,1|1.1,7)"  # the paper's best Scale-VAE setting (Tables 1 and 2)


@dataclass(frozen=True)
class Claim:
    text: str
    table: str
    column: str
    row: str
    kind: str  # "lowest"/"highest" among the table's rows, "less"/"greater" than `other`, "at_most"/"at_least" `bound`
    other: str = ""
    bound: float = math.nan
    among: str = "all"  # lowest/highest: against "all" other rows, or the "baselines" (rows of other methods)


CLAIMS = [
    Claim("Scale-VAE(1.1, 1) has the lowest NLL of Table 1 on Yahoo", "table1", "yahoo_nll", SCALE_BEST, "lowest",
          among="baselines"),
    Claim("Scale-VAE(1.1, 7) has the lowest NLL of Table 1 on Yelp", "table1", "yelp_nll", SCALE_BEST, "lowest",
          among="baselines"),
    Claim("Scale-VAE(1.1, 1) has a lower NLL than VAE on Yahoo", "table1", "yahoo_nll", SCALE_BEST, "less", "vae"),
    Claim("Scale-VAE(1.1, 7) has a lower NLL than VAE on Yelp", "table1", "yelp_nll", SCALE_BEST, "less", "vae"),
    Claim("Scale-VAE(1.1, 1) has a lower NLL than BN-VAE(0.6) on Yahoo", "table1", "yahoo_nll", SCALE_BEST, "less", "bn_vae(0.6)"),
    Claim("Vanilla VAE's AU is near 0 on Yahoo (posterior collapse; AU <= 1)", "table1", "yahoo_au", "vae", "at_most", bound=1),
    Claim("Vanilla VAE's AU is near 0 on Yelp (AU <= 1)", "table1", "yelp_au", "vae", "at_most", bound=1),
    Claim("Vanilla VAE's KL is near 0 on Yahoo (KL <= 0.5)", "table1", "yahoo_kl", "vae", "at_most", bound=0.5),
    Claim("Scale-VAE keeps all 32 units active on Yahoo", "table1", "yahoo_au", SCALE_BEST, "at_least", bound=32),
    Claim("Scale-VAE keeps all 32 units active on Yelp", "table1", "yelp_au", SCALE_BEST, "at_least", bound=32),
    Claim("Scale-VAE has a higher MI than BN-VAE(0.6) on Yahoo", "table1", "yahoo_mi", SCALE_BEST, "greater", "bn_vae(0.6)"),
    Claim("Scale-VAE has a higher MI than BN-VAE(0.6) on Yelp", "table1", "yelp_mi", SCALE_BEST, "greater", "bn_vae(0.6)"),
    Claim("Scale-VAE has the highest MI of Table 1 on Yahoo", "table1", "yahoo_mi", SCALE_BEST, "highest",
          among="baselines"),
    Claim("Scale-VAE has the highest MI of Table 1 on Yelp", "table1", "yelp_mi", SCALE_BEST, "highest",
          among="baselines"),
    Claim("BN-VAE(0.0, 0.7) carries no information: MI near 0 on Yahoo (MI <= 0.5)", "table1", "yahoo_mi", "bn_vae(0.0,0.7)", "at_most", bound=0.5),
    Claim("BN-VAE(0.0, 0.7) has no active unit on Yahoo (AU <= 1)", "table1", "yahoo_au", "bn_vae(0.0,0.7)", "at_most", bound=1),
    Claim("δ-VAE(0.1) carries no information: MI near 0 on Yahoo (MI <= 0.5)", "table1", "yahoo_mi", "delta_vae(0.1)", "at_most", bound=0.5),
    Claim("Scale-VAE trains faster than VAE on Yahoo (Table 2)", "table2", "yahoo_hours", SCALE_BEST, "less", "vae"),
    Claim("Scale-VAE trains faster than VAE on Yelp (Table 2)", "table2", "yelp_hours", SCALE_BEST, "less", "vae"),
    Claim("Scale-VAE trains faster than BN-VAE on Yahoo (Table 2)", "table2", "yahoo_hours", SCALE_BEST, "less", "bn_vae(0.6)"),
    Claim("des_std 1.3, f_epo 3 gives the lowest NLL of the Table 3 grid", "table3", "yahoo_nll", "scale_vae(1.3,3)", "lowest"),
    Claim("Scale-VAE beats BN-VAE in the linear probe with 100 labels", "table4", "acc_100", "scale_vae(0.7,1)", "greater", "bn_vae(0.6)"),
    Claim("Scale-VAE beats VAE in the linear probe with 100 labels", "table4", "acc_100", "scale_vae(0.7,1)", "greater", "vae"),
    Claim("Scale-VAE has the best linear probe with 100 labels (Table 4)", "table4", "acc_100", "scale_vae(0.7,1)", "highest",
          among="baselines"),
    Claim("Scale-VAE's generations are more diverse than BN-VAE's (Dist-1)", "table5", "dist1", "scale_vae(1.1,1)", "greater", "bn_vae(0.6)"),
    Claim("Scale-VAE's generations have a higher unigram entropy than BN-VAE's", "table5", "entropy", "scale_vae(1.1,1)", "greater", "bn_vae(0.6)"),
    Claim("BN-VAE's generations have a lower PPL than Scale-VAE's (the paper's one concession)", "table5", "ppl", "bn_vae(0.6)", "less", "scale_vae(1.1,1)"),
]


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    evidence: str


def welch(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value (nan with fewer than two seeds on a side or no variance)."""
    if a.size < 2 or b.size < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def compare(a: np.ndarray, b: np.ndarray, want_less: bool) -> tuple[str, str]:
    difference = a.mean() - b.mean()
    right_sign = difference < 0 if want_less else difference > 0
    p = welch(a, b)
    evidence = f"{a.mean():.3g} vs {b.mean():.3g} (n={a.size}/{b.size}, Welch p={p:.3g})"
    if min(a.size, b.size) < 2:
        return ONE_SEED, evidence + ("; right direction" if right_sign else "; wrong direction")
    if right_sign and (p < ALPHA or (math.isnan(p) and a.std() == b.std() == 0)):
        return HOLDS, evidence
    return FAILS, evidence + ("; right direction but not significant" if right_sign else "")


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


def check(claim: Claim, table: Table | None) -> Verdict:
    values = table.cell(claim.row, claim.column) if table else np.array([])
    if not values.size:
        return Verdict(claim, NOT_RUN, "no finished run")
    if claim.kind in ("at_most", "at_least"):
        if (capped := at_ceiling(claim, table, {claim.row: values})) is not None:
            return capped
        mean = values.mean()
        ok = mean <= claim.bound if claim.kind == "at_most" else mean >= claim.bound
        return Verdict(claim, HOLDS if ok else FAILS, f"mean {mean:.3g} (n={values.size}), bound {claim.bound:g}")
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
    verdict, evidence = compare(values, rivals[runner_up], claim.kind == "lowest")
    return Verdict(claim, verdict, f"{evidence}; best {'baseline' if claim.among == 'baselines' else 'rival'} {runner_up}")


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


def check_all(tables: dict[str, Table]) -> list[Verdict]:
    return [check(c, tables.get(claim.table)) for claim in CLAIMS for c in on_corpora(claim, tables.get(claim.table))]
