"""Every figure the README and docs quote about committed results, read back from the committed files.

Each entry of QUOTES names a page, the figure in words, the committed file it comes from, and a
function that computes from that file the text the page must contain, formatted as the page
quotes it. When results are regenerated, every failure names the page, the figure and the file,
and shows the page's sentence: the ones to update. Reads files only (and the runner's plan, for
run counts); no network, no runs.

Wall times measured in slices are in no committed file: docs/results-quick.md's table is their
record (STEPS below, checked against the table), and the totals quoted elsewhere must add them up.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK, RECORDS = "results/quick", "results/quick/records"
REGIME = "results/quick/tables/scale_regime.csv"  # the study, regenerated from the records with results/quick/
REGIME_LR1E3 = "results/scale_regime-quick/scale_regime-adam-lr1e-3.md"
LADDER = "results/ladder/ladder.csv"
PERF = "results/perf"
PRECISION = "results/perf/precision-quick/precision.csv"
SAME_WEIGHTS = "results/perf/precision-quick/precision_same_weights.csv"
README, RESULTS, PERF_DOC, STEADY = "README.md", "docs/results-quick.md", "docs/performance.md", "docs/steady-state.md"

SWEEP = ("core", "latent_space", "table1", "table2", "table3", "table4", "table5", "scale_regime")
STUDY_EXTRA = ("scale_regime_f_average",)  # the study's harmonic-f_bar lines: in the records, not in SWEEP's 311 runs
SCALE_T1 = ("scale_vae(0.7,1|0.7,7)", "scale_vae(0.9,1|0.9,7)", "scale_vae(1.1,1|1.1,7)", "scale_vae*(0.7,1|1.1,7)")
S11_T1, MAE_T1, S07, S11 = "scale_vae(1.1,1|1.1,7)", "mae(1,0.2|2,0.2)", "scale_vae(0.7,1)", "scale_vae(1.1,1)"
BY_LABEL = "batching=by_label"


# --- one reader per committed source -------------------------------------------------------------------

@cache
def table(name: str, group: str = QUICK) -> pd.DataFrame:
    """results/<group>/tables/<name>.csv by row id (columns <dataset>_<metric>_mean, _std, _n)."""
    return pd.read_csv(ROOT / group / "tables" / f"{name}.csv", index_col="row")


def cell(name: str, row: str, column: str, group: str = QUICK) -> float:
    return table(name, group).loc[row, column]


VERDICTS = ("holds by construction", "holds", "contradicted", "not shown (paper's direction)",
            "not shown (other direction)", "no verdict", "not run")


def verdict_of(shown: str) -> str:
    """A verdict as REPORT.md shows it ("❌ contradicted (model's prior)") as one of VERDICTS."""
    words = re.sub(r"^\W+", "", shown)
    return next(v for v in VERDICTS if words.startswith(v))


@cache
def report(group: str = QUICK) -> dict[str, tuple[str, str, str]]:
    """REPORT.md's claims: {claim: (verdict, evidence, the reading under the other convention or "")}."""
    text = (ROOT / group / "REPORT.md").read_text(encoding="utf-8")
    out = {}
    for line in text.split("## Claims", 1)[1].split("\n\n")[1].splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        claim, shown, evidence, other = (cells + [""])[:4]
        out[claim] = (verdict_of(shown), evidence, other)
    return out


def report_section(heading: str, group: str = QUICK) -> pd.DataFrame:
    """The first markdown table under a REPORT.md heading, as text cells."""
    text = (ROOT / group / "REPORT.md").read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    lines = [x for x in text.split("\n## ", 1)[0].splitlines() if x.startswith("|")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", x)[1:-1]] for x in lines]
    return pd.DataFrame(split[2:], columns=split[0])


def report_numbers(pattern: str, group: str = QUICK) -> list[int]:
    """The numbers a pattern captures in REPORT.md's run counts."""
    match = re.search(pattern, (ROOT / group / "REPORT.md").read_text(encoding="utf-8"))
    assert match, f"{group}/REPORT.md no longer says {pattern!r}"
    return [int(x) for x in match.groups()]


def p_value(claim: str, group: str = QUICK, other: bool = False) -> str:
    """A claim's Welch p in REPORT.md (under the other convention: other=True), to two significant figures."""
    return sig2(float(re.search(r"Welch p=([0-9.e-]+)", report(group)[claim][2 if other else 1]).group(1)))


def other_means(claim: str) -> tuple[str, str]:
    """The two means a claim's reading under the other convention compares ("1.03 vs 2.94"), as REPORT.md prints them."""
    return re.search(r"\(([-0-9.]+) vs ([-0-9.]+) \(n=", report()[claim][2]).groups()


def latent(row: str, setting: str) -> tuple[float, float, int]:
    """REPORT.md's latent-space silhouette of a panel: mean, std and seeds ("- row, setting: m ± s (n=N)")."""
    text = (ROOT / QUICK / "REPORT.md").read_text(encoding="utf-8")
    match = re.search(rf"^- {re.escape(row)}, {re.escape(setting)}: ([-0-9.]+) ± ([0-9.]+) \(n=(\d+)\)$", text, re.M)
    assert match, f"REPORT.md has no latent-space line for {row}, {setting}"
    return float(match.group(1)), float(match.group(2)), int(match.group(3))


def latent_claim() -> tuple[str, str]:
    """REPORT.md's latent-space claim: its verdict and Welch p (two significant figures)."""
    text = (ROOT / QUICK / "REPORT.md").read_text(encoding="utf-8")
    match = re.search(r"^Claim \"with one Gaussian component per mini-batch.*?\": (.*?) \(silhouette .*Welch p=([0-9.e-]+)\)",
                      text, re.M)
    assert match, "REPORT.md has no tested latent-space claim"
    return verdict_of(match.group(1)), sig2(float(match.group(2)))


@cache
def regime() -> pd.DataFrame:
    """results/quick/tables/scale_regime.csv by (protocol, row); protocol a, b, c, b harmonic or c harmonic."""
    frame = pd.read_csv(ROOT / REGIME)

    def letter(protocol: str) -> str:
        name = "a" if protocol == "profile's own" else "c" if "shen2021" in protocol else "b"
        return name + (" harmonic" if "harmonic" in protocol else "")
    return frame.assign(protocol=frame["protocol"].map(letter)).set_index(["protocol", "row"])


def sr(protocol: str, row: str, column: str) -> float:
    return regime().loc[(protocol, row), column]


def per_seed_f(protocol: str, row: str) -> list[float]:
    return [float(x) for x in sr(protocol, row, "f_bar_per_seed").split(",")]


def lr1e3(row: str, column: str) -> str:
    """A protocol-(a) mean of results/scale_regime-quick/scale_regime-adam-lr1e-3.md (a markdown table)."""
    lines = (ROOT / REGIME_LR1E3).read_text(encoding="utf-8").splitlines()
    columns = [c.strip() for c in next(x for x in lines if x.startswith("| protocol")).strip("|").split("|")]
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == ["profile's own", row]:
            return cells[columns.index(column)].split(" ± ")[0]
    raise AssertionError(f"{REGIME_LR1E3} has no protocol (a) row {row}")


@cache
def ladder() -> pd.DataFrame:
    """results/ladder/ladder.csv by (rung, row), e.g. ("R1 length", "scale_vae(0.7,1)")."""
    return pd.read_csv(ROOT / LADDER).set_index(["rung", "row"])


def r1(row: str, column: str) -> float:
    return ladder().loc[("R1 length", row), column]


def r0(row: str, column: str) -> float:
    return ladder().loc[("R0 quick", row), column]


@cache
def perf(name: str) -> dict:
    """results/perf/<name>.json, written by python -m benchmarks.perf."""
    return json.loads((ROOT / PERF / f"{name}.json").read_text(encoding="utf-8"))


@cache
def precision() -> pd.DataFrame:
    """results/perf/precision-quick/precision.csv: per row and metric, the fp32/bf16 means, difference, p."""
    return pd.read_csv(ROOT / PRECISION)


@cache
def planned(experiments: tuple[str, ...] | None = None, seeds: int | None = None) -> dict:
    """The distinct runs the runner plans at `quick` (benchmarks.plan): {run id: config}."""
    from benchmarks import plan
    return {p.run_id: p.config for p in plan.plan("quick", list(experiments) if experiments else None, seeds)}


# --- formats, as the pages write them --------------------------------------------------------------------

def span(values, digits: int = 0) -> str:
    """'lo-hi' of the rounded minimum and maximum: '11-21', '235-2,470'."""
    values = list(values)
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f}"


def sig2(p: float) -> str:
    """Two significant figures, trailing zeros kept: 0.050, 0.0039, 0.00011."""
    return f"{p:.{max(1 - math.floor(math.log10(p)), 0)}f}"


def hm(minutes: float) -> str:
    """'4 h 02' of a number of minutes, to the minute."""
    whole = round(minutes)
    return f"{whole // 60} h {whole % 60:02d}"


def about(minutes: float) -> str:
    """To the nearest 10 minutes: '8 h 20 min'."""
    whole = int(round(minutes / 10) * 10)
    return f"{whole // 60} h {whole % 60:02d} min"


# --- wall times measured in slices: docs/results-quick.md's table is their record ---------------------

STEPS = {  # slice of the sweep: its pieces' wall times as the table shows them ("1 h 04 min 08 s + 35 min 59 s")
    "seed 0": "18 min 10 s + 1 h 42 min 28 s",
    "seed 1": "13 min 27 s + 1 min 53 s + 1 h 27 min 07 s",
    "seed 2": "1 h 04 min 08 s + 35 min 59 s",
    "seed 3": "1 h 23 min 11 s",
    "seed 4": "26 min 36 s + 16 min 22 s + 40 min 26 s",
    "harmonic f_bar": "9 min 56 s",
    "precision": "26 min 29 s",
}
SEEDS = tuple(f"seed {i}" for i in range(5))


def minutes(*names: str) -> float:
    """The wall time of slices of STEPS, in minutes: the sum of their pieces."""
    total = 0.0
    for piece in (p for n in names for p in STEPS[n].split(" + ")):
        parts = dict((unit, int(x)) for x, unit in re.findall(r"(\d+) (h|min|s)\b", piece))
        assert parts, f"STEPS: no duration in {piece!r}"
        total += parts.get("h", 0) * 60 + parts.get("min", 0) + parts.get("s", 0) / 60
    return total


# --- figures that take a few lines ---------------------------------------------------------------------

def gap_to_vae(dataset: str, group: str = QUICK) -> str:
    """The span of Scale-VAE's Table 1 rows' NLL minus VAE's: '11-21'."""
    t = table("table1", group)
    return span(t.loc[r, f"{dataset}_nll_mean"] - t.loc["vae", f"{dataset}_nll_mean"] for r in SCALE_T1)


def verdicts(group: str = QUICK) -> Counter:
    """How many claims got each verdict (VERDICTS) on the convention the paper's numbers use."""
    return Counter(v for v, _, _ in report(group).values())


def claim_counts() -> str:
    """'27 claims, on the convention the paper's numbers use, 9 hold, 6 are contradicted, ...' as the pages write it."""
    v = verdicts()
    papers_way, other_way = v["not shown (paper's direction)"], v["not shown (other direction)"]
    return (f"{sum(v.values())} claims, on the convention the paper's numbers use, {v['holds']} hold, "
            f"{v['contradicted']} are contradicted, {papers_way + other_way} are not shown (no significant difference: "
            f"{papers_way} lean the paper's way, {other_way} the other), {v['no verdict']} get no verdict (an "
            f"estimator's ceiling) and {v['holds by construction']} hold by construction")


def seed_counts(name: str) -> pd.Series:
    t = table(name)
    return t[[c for c in t.columns if c.endswith("_n")]].max(axis=1).astype(int)


def seed_sets() -> str:
    """'5 seeds in every cell of Tables 1-5', or the rows with fewer."""
    fewer = {name: seed_counts(name)[lambda n: n < 5] for name in ("table1", "table2", "table3", "table4", "table5")}
    if not any(len(f) for f in fewer.values()):
        return "5 seeds in every cell of Tables 1-5"
    return "; ".join(f"{name}: {', '.join(f'{r} n = {n}' for r, n in f.items())}" for name, f in fewer.items() if len(f))


def sgd(runs: dict) -> list:
    return [c for c in runs.values() if c.profile.optimizer == "sgd"]


def study_sgd() -> int:
    """The scale_regime study's SGD runs (protocols (b) and (c), seeds 0-2)."""
    return len(sgd(planned(("scale_regime",))))


def ladder_own() -> int:
    """The ladder's runs that no other experiment shares (R1; R0 is the tables' runs)."""
    from benchmarks import plan
    return len(set(planned()) - set(planned(tuple(e for e in plan.available() if e != "ladder"))))


def precision_own() -> int:
    """The precision check's runs that no other experiment shares (its bfloat16 twins)."""
    from benchmarks import plan
    return len(set(planned()) - set(planned(tuple(e for e in plan.available() if e != "precision"))))


def behind_tables() -> int:
    return report_numbers(r"Of the (\d+) finished runs behind the tables")[0]


def records() -> tuple[int, float]:
    """The committed records: how many runs, and their files' size in MB."""
    runs = [d for d in (ROOT / RECORDS / "runs").iterdir() if d.is_dir()]
    return len(runs), sum(f.stat().st_size for d in runs for f in d.iterdir()) / 1e6


def r1_minutes() -> str:
    return span(ladder().loc["R1 length", "train_minutes"].dropna())


DIST1 = "Scale-VAE's generations are more diverse than BN-VAE's (Dist-1)"
ENTROPY = "Scale-VAE's generations have a higher unigram entropy than BN-VAE's"
HIGHEST_MI = "Scale-VAE has the highest MI of Table 1 on {}"
MI_BN = "Scale-VAE has a higher MI than BN-VAE(0.6) on {}"


def generation() -> str:
    t = table("table5")
    s, b = t.loc[S11], t.loc["bn_vae(0.6)"]
    dist = f"{s['dist1_mean']:.3f} vs {b['dist1_mean']:.3f}, p = {p_value(DIST1)}"
    entropy = f"{s['entropy_mean']:.2f} vs {b['entropy_mean']:.2f}, p = {p_value(ENTROPY)}"
    return f"(Dist-1 {dist}; entropy {entropy}; BN-VAE's PPL {b['ppl_mean']:.0f} vs {s['ppl_mean']:.0f}"


def capped() -> str:
    """Table 5's samples that hit the length cap, as its footnote in REPORT.md counts them."""
    text = (ROOT / QUICK / "REPORT.md").read_text(encoding="utf-8")
    counts = dict(re.findall(r"(BN-VAE \(0\.6\)|Scale-VAE \(1\.1, 1\)) ([\d,]+ of [\d,]+)", text.split("Samples that reached the cap", 1)[1]))
    return f"{counts['Scale-VAE (1.1, 1)']} of Scale-VAE's samples and {counts['BN-VAE (0.6)']} of BN-VAE's"


def uncapped(claim: str) -> str:
    """A generation claim on the uncapped samples: its means and p."""
    a, b = other_means(claim)
    return f"{a} vs {b}, p = {p_value(claim, other=True)}"


def both_priors(row: str, dataset: str) -> tuple[float, float, float]:
    """REPORT.md's "Scale-VAE under both priors": f_bar, NLL under the model's prior, NLL under N(0, I).

    A run shared by two experiments is listed once, under the label of the first (Yahoo's (0.7, 1) of
    Table 1 is core's `scale_vae(0.7,1)`)."""
    t = report_section("Scale-VAE under both priors")
    hit = t[(t["row"] == row.replace("|", "\\|")) & (t["dataset"] == dataset) & (t["setting"] == "")]
    assert len(hit) == 1, f"REPORT.md's both-priors table has no single {row} on {dataset}"
    return tuple(float(hit.iloc[0][c]) for c in ("f_bar", "NLL, own prior N(0, f_bar^2)", "NLL under N(0, I)"))


def rough(x: float) -> str:
    """A factor as the pages round it: 638, 84, 8e6, 1e11."""
    return f"{x:.0e}".replace("e+0", "e").replace("e+", "e") if x >= 1e4 else f"{x:.0f}"


def c_seeds() -> str:
    """Scale-VAE's per-seed f_bar under (c): "8e6, 1e11 and 638 (des_std 0.7) and 73, 6e11 and 84 (1.1)"."""
    said = {row: [rough(x) for x in per_seed_f("c", row)] for row in (S07, S11)}
    return " and ".join(f"{', '.join(v[:-1])} and {v[-1]} (des_std {row[10:13]})" if row == S07
                        else f"{', '.join(v[:-1])} and {v[-1]} ({row[10:13]})" for row, v in said.items())


def steady_gaps() -> str:
    gap = {p: sr(p, S07, "nll_mean") - sr(p, "vae", "nll_mean") for p in "abc"}
    unit = sr("a", S07, "nll_unit_prior_mean") - sr("a", "vae", "nll_unit_prior_mean")
    return (f"(0.7, 1) is {gap['a']:.1f} nats worse than VAE under (a) ({sr('a', S07, 'nll_mean'):.1f} against "
            f"{sr('a', 'vae', 'nll_mean'):.1f}), {gap['b']:.0f} under (b) and {gap['c']:.0f} under (c); "
            f"with N(0, I) {unit:.1f} nats worse under (a)")


def paper_mfu_fp32() -> tuple[float, float]:
    """The float32 VAE step's MFU at paper sizes in the two committed files."""
    return perf("cpu-paper-sa_vae_fd")["vae_step_mfu"], perf("cpu-paper")["vae_step"]["fp32"]["mfu_fp32_peak"]


def iw_speedup(name: str, precision_: str | None = None) -> str:
    ev = perf(name)["eval"]
    return f"{(ev[precision_] if precision_ else ev)['iw_speedup']:.1f}×"


def train_row(name: str, method: str, with_ratio: bool) -> str:
    """A row of performance.md's training-step tables."""
    j = perf(name)
    fp32, bf16 = j["train"]["fp32"][method], j["train"]["bf16"][method]
    cells = [method, f"{fp32['step_ms']:,.1f}", f"{bf16['step_ms']:,.1f}", f"{j['speedup_bf16']['train'][method]:.2f}×"]
    if with_ratio:
        cells.append(f"{fp32['time_ratio_to_vae']:.2f} / {bf16['time_ratio_to_vae']:.2f}")
    return "| " + " | ".join(cells) + " |"


def mfu_row(name: str, precision_: str) -> str:
    """A row of performance.md's MFU table (up to the IW-NLL speed-up)."""
    j = perf(name)
    step, ev, quick = j["vae_step"][precision_], j["eval"][precision_], j["profile"] == "quick"

    def percent(x: float) -> str:
        return f"{100 * x:.{1 if x < 1 else 0}f}%"
    docs = 0 if quick else 2
    return (f"| {j['profile']} | {precision_} | {j['matmul_peak_gflops'][precision_]:,.0f} GFLOP/s | "
            f"{step['gflops']:.0f} GFLOP/s | {j['train'][precision_]['vae']['step_ms']:,.{1 if quick else 0}f} | "
            f"{percent(step['mfu_fp32_peak'])} ({percent(step['mfu_fp32_peak_paired'])}) / {percent(step['mfu_bf16_peak'])} | "
            f"{ev['docs_per_s_batched']:.{docs}f} vs {ev['docs_per_s_one_document']:.{docs}f} docs/s ({ev['iw_speedup']:.1f}×")


def parts_row(label: str, part: str) -> str:
    """A row of performance.md's bfloat16 parts table: quick, then paper sizes."""
    cells = [label]
    for name, digits in (("cpu-quick", 2), ("cpu-paper", 1)):
        j = perf(name)
        fp32, bf16, up = j["parts"]["fp32"][part], j["parts"]["bf16"][part], j["speedup_bf16"]["parts"][part]
        cells += [f"{fp32['forward_ms']:.{digits}f} / {fp32['backward_ms']:.{digits}f}",
                  f"{bf16['forward_ms']:.{digits}f} / {bf16['backward_ms']:.{digits}f}",
                  f"{up['forward']:.2f}× / {up['backward']:.2f}×"]
    return "| " + " | ".join(cells) + " |"


def same_weights_row(name: str) -> str:
    """bf16 − fp32 of the same weights [float32 under other draws], from a perf JSON's same_weights."""
    sw = perf(name)["same_weights"]
    d, noise = sw["difference"], sw["noise"]

    def signed(x: float) -> str:
        return f"{x:+.4f}".replace("-", "−")
    return (f"| {sw['documents']} | {signed(d['nll'])} [{noise['nll']:.3f}] | {signed(d['kl'])} [{noise['kl']:.0f}] | "
            f"{signed(d['mi'])} [{noise['mi']:.2f}] | {d['au']:.0f} [{noise['au']:.0f}] |")


def trained_same_weights() -> str:
    frame = pd.read_csv(ROOT / SAME_WEIGHTS)
    worst = {c: frame[f"d_{c}"].abs().max() for c in ("nll_unit_prior", "nll", "kl", "mi", "au")}
    return (f"{len(frame)} trained runs ({frame['seed'].nunique()} seeds of VAE, BN-VAE(0.6), Scale-VAE(0.7, 1)) | "
            f"500 each | at most {max(worst['nll'], worst['nll_unit_prior']):.4f} in absolute value | "
            f"at most {worst['kl']:.4f} | at most {worst['mi']:.4f} | {worst['au']:.0f} |")


ROW_NAMES = {"vae": "VAE", "bn_vae(0.6)": "BN-VAE", S07: "Scale-VAE"}
METRIC_NAMES = {"nll": "NLL", "nll_unit_prior": "NLL with unit prior", "kl": "KL", "mi": "MI",
                "mi_unscaled": "MI (unscaled)", "au": "AU"}


def precision_tests() -> str:
    """'(0 of 18; the smallest p is 0.25, Scale-VAE's NLL with unit prior, +0.63 nat'."""
    frame = precision()
    tested = frame[frame["metric"] != "train_seconds"]
    low = tested.loc[tested["p"].idxmin()]
    return (f"({int((tested['p'] < 0.05).sum())} of {len(tested)}; the smallest p is {low['p']:.2f}, "
            f"{ROW_NAMES[low['row']]}'s {METRIC_NAMES[low['metric']]}, {low['difference']:+.2f} nat")


def training_seconds() -> str:
    """'(VAE 20.5 → 15.3 s, BN-VAE ..., Scale-VAE ... per run' and the share of time saved."""
    t = precision()[precision()["metric"] == "train_seconds"].set_index("row")
    return ", ".join(f"{ROW_NAMES[r]} {t.loc[r, 'fp32_mean']:.1f} → {t.loc[r, 'bf16_mean']:.1f} s" for r in ROW_NAMES)


def time_saved() -> str:
    t = precision()[precision()["metric"] == "train_seconds"]
    return span(100 * (1 - t["bf16_mean"] / t["fp32_mean"])) + "%"


# --- the quotes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quote:
    doc: str
    figure: str
    source: str
    text: Callable[[], str]


T1, T3, T4, T5 = (f"{QUICK}/tables/table{i}.csv" for i in (1, 3, 4, 5))
RQ = f"{QUICK}/REPORT.md"
PLAN = "benchmarks/experiments/*.toml (the runner's plan)"
STEP_TABLE = f"{RESULTS}'s slices table (STEPS)"
QJ, PJ, FDJ = (f"{PERF}/{n}.json" for n in ("cpu-quick", "cpu-paper", "cpu-paper-sa_vae_fd"))
NLL_VAE = "Scale-VAE(1.1, {}) has a lower NLL than VAE on {}"


def capped_runs() -> str:
    behind, capped = report_numbers(r"Of the (\d+) finished runs behind the tables, (\d+) ended at the epoch cap")
    return f"{capped} of the {behind} runs behind the tables ended at the epoch cap"


def sweep_runs() -> int:
    return len(planned(SWEEP, 5))


README_QUOTES = [
    # the lead
    Quote(README, "the records' runs and size", RECORDS,
          lambda: "regenerated from the records of their {} runs ([`results/quick/records/`](results/quick/records/), "
                  "{:.0f} MB".format(*records())),
    Quote(README, "the runs the epoch cap ended", RQ, capped_runs),
    Quote(README, "claim counts", RQ, lambda: f"Of the paper's {claim_counts()}"),
    Quote(README, "Scale-VAE's NLL gap to VAE", T1,
          lambda: f"{gap_to_vae('yahoo')} nats behind VAE on `yahoo_small`, {gap_to_vae('yelp')} on `yelp_small`"),
    Quote(README, "the ladder's NLL differences to VAE at R1, the model's prior", LADDER,
          lambda: f"trail VAE by {r1(S07, 'd_nll_vae'):.1f} and {r1(S11, 'd_nll_vae'):.1f} nats"),
    Quote(README, "the ladder's NLL differences to VAE at R1, N(0, I)", LADDER,
          lambda: f"{r1(S07, 'd_nll_unit_prior_vae'):.1f} and {r1(S11, 'd_nll_unit_prior_vae'):.1f} under N(0, I)"),
    Quote(README, "the ladder's NLL differences to VAE at R0 (the same seeds)", LADDER,
          lambda: f"({r0(S07, 'd_nll_vae'):.1f} and {r0(S11, 'd_nll_vae'):.1f}, {r0(S07, 'd_nll_unit_prior_vae'):.1f} and "
                  f"{r0(S11, 'd_nll_unit_prior_vae'):.1f} at `quick` in the same seeds)"),
    Quote(README, "f_bar at R1 and R0 (the ladder)", LADDER,
          lambda: f"f_bar {r1(S07, 'f_mean'):.2f} and {r1(S11, 'f_mean'):.2f} instead of "
                  f"{r0(S07, 'f_mean'):.2f} and {r0(S11, 'f_mean'):.2f}"),
    Quote(README, "des_std 0.7's N(0, I) gap to the LSTM-LM at R0 and R1 (the ladder)", LADDER,
          lambda: f"({r0(S07, 'd_nll_unit_prior_lstm_lm'):.1f} → {r1(S07, 'd_nll_unit_prior_lstm_lm'):.1f} nats)"),
    Quote(README, "the seeds of Tables 1-5", f"{QUICK}/tables/table*.csv", lambda: f"({seed_sets()})"),
    # the command tables
    Quote(README, "./run_all.sh's distinct runs", PLAN, lambda: f"5 seeds: {len(planned())} distinct runs"),
    Quote(README, "the 5-seed sweep's wall time and runs", f"{STEP_TABLE} and {PLAN}",
          lambda: f"about **{about(minutes(*SEEDS))}** of wall time with 2 workers for the {sweep_runs()} runs"),
    Quote(README, "seeds 0 to 4 in minutes", STEP_TABLE,
          lambda: "seeds 0 to 4 took " + ", ".join(f"{minutes(x):.0f}" for x in SEEDS[:4]) + f" and {minutes(SEEDS[4]):.0f} min"),
    Quote(README, "the runs it leaves out", f"{PLAN} and {STEP_TABLE}",
          lambda: f"the `precision` check's {precision_own()} bfloat16 runs ({STEPS['precision']} for its "
                  f"{len(planned(('precision',)))} on a second 2-core machine), the {len(planned(STUDY_EXTRA))} "
                  f"harmonic-f_bar runs ({STEPS['harmonic f_bar']}) and the ladder's {ladder_own()} runs at R1"),
    Quote(README, "the training minutes of the ladder's R1 runs", LADDER, lambda: f"R1, {r1_minutes()} min each"),
    Quote(README, "seed 0's distinct runs", PLAN,
          lambda: f"seed 0 of every experiment but `precision`: {len(planned(SWEEP, 1))} distinct runs"),
    Quote(README, "seed 0's wall time", STEP_TABLE, lambda: f"**{hm(minutes('seed 0'))} min**"),
    Quote(README, "a seed without the study's runs", f"{PLAN} and {STEP_TABLE}",
          lambda: f"seed 3 ({len(planned(SWEEP, 4)) - len(planned(SWEEP, 3))} runs, no study run) took {STEPS['seed 3']}"),
    Quote(README, "seeds 0-2's distinct runs", PLAN,
          lambda: f"seeds 0-2 of every experiment but `precision`: {len(planned(SWEEP, 3))} distinct runs"),
    Quote(README, "seeds 0-2's wall time", STEP_TABLE,
          lambda: f"{hm(minutes(*SEEDS[:3]))} min measured in slices"),
    # the scale_regime bullets
    Quote(README, "f_bar under (a)", REGIME,
          lambda: f"f_bar {sr('a', S07, 'f_mean_mean'):.2f} ± {sr('a', S07, 'f_mean_std'):.2f} (des_std 0.7) and "
                  f"{sr('a', S11, 'f_mean_mean'):.2f} ± {sr('a', S11, 'f_mean_std'):.2f} (1.1)"),
    Quote(README, "KL, MI and AU under (a)", REGIME,
          lambda: f"unscaled KL {sr('a', S07, 'kl_mean'):.2f} and {sr('a', S11, 'kl_mean'):.2f}, "
                  f"MI {sr('a', S07, 'mi_mean'):.2f} and {sr('a', S11, 'mi_mean'):.2f}, "
                  f"all {sr('a', S07, 'au_mean'):.0f} units active"),
    Quote(README, "f_bar, KL and AU under (b)", REGIME,
          lambda: f"f_bar stays at {span(per_seed_f('b', S07) + per_seed_f('b', S11))}, "
                  f"KL {sr('b', S07, 'kl_mean'):.1f}, no active unit"),
    Quote(README, "f_bar's seeds under (c)", REGIME, lambda: f"no seed settles: f_bar ends at {c_seeds()}"),
    Quote(README, "KL against des_std under (a)", REGIME,
          lambda: f"({sr('a', S07, 'kl_mean'):.2f} → {sr('a', S11, 'kl_mean'):.2f}"),
    Quote(README, "NLL under (a), both priors", REGIME,
          lambda: f"{sr('a', S07, 'nll_mean'):.1f} against VAE's {sr('a', 'vae', 'nll_mean'):.1f} with the prior "
                  f"N(0, f_bar²), {sr('a', S07, 'nll_unit_prior_mean'):.1f} with N(0, I)"),
    Quote(README, "the first batch's factor under (b)", REGIME,
          lambda: f"factor is about {round(sr('b', S07, 'f_first_batch_mean'), -3):,.0f}"),
]

RESULTS_QUOTES = [
    # the records
    Quote(RESULTS, "the records' runs, size and size a run", RECORDS,
          lambda: "the records of the {} runs".format(records()[0]) + " ({:.1f} MB, {:.0f} kB a run".format(
              records()[1], 1000 * records()[1] / records()[0])),
    Quote(RESULTS, "the seeds of Tables 1-5", f"{QUICK}/tables/table*.csv", lambda: f"**Which seeds**: {seed_sets()}"),
    Quote(RESULTS, "the runs the epoch cap ended", RQ, capped_runs),
    # Table 1
    Quote(RESULTS, "Scale-VAE's NLL gap to VAE", T1,
          lambda: f"trail VAE by **{gap_to_vae('yahoo')} nats** on Yahoo and **{gap_to_vae('yelp')}** on Yelp"),
    Quote(RESULTS, "Welch p of the NLL claims against VAE", RQ,
          lambda: f"(Welch p = {p_value(NLL_VAE.format(1, 'Yahoo'))} and {p_value(NLL_VAE.format(7, 'Yelp'))})"),
    Quote(RESULTS, "Skip-VAE's NLL", T1,
          lambda: f"({cell('table1', 'skip_vae', 'yahoo_nll_mean'):.1f} and {cell('table1', 'skip_vae', 'yelp_nll_mean'):.1f})"),
    Quote(RESULTS, "Scale-VAE(0.7, 1) under both priors on Yahoo", f"{RQ} and {T1}",
          lambda: "Scale-VAE(0.7, 1) scores {2:.1f} on Yahoo under N(0, I) and {1:.1f} under its own prior".format(
              *both_priors("scale_vae(0.7,1)", "yahoo_small")) + f" (VAE: {cell('table1', 'vae', 'yahoo_nll_mean'):.1f})"),
    Quote(RESULTS, "Scale-VAE(1.1, 7) under both priors on Yelp", RQ,
          lambda: "Scale-VAE(1.1, 7) scores {1:.1f} under its own prior and {2:.1f} under N(0, I) (f_bar {0:.2f})".format(
              *both_priors(S11_T1, "yelp_small"))),
    Quote(RESULTS, "the NLL claims under N(0, I)", RQ,
          lambda: f"under N(0, I) the Yahoo claims are still contradicted (p = {p_value(NLL_VAE.format(1, 'Yahoo'), other=True)} "
                  f"against VAE) and the Yelp ones not shown (p = {p_value(NLL_VAE.format(7, 'Yelp'), other=True)})"),
    Quote(RESULTS, "the highest MI on Yahoo", f"{T1} and {RQ}",
          lambda: f"({cell('table1', S11_T1, 'yahoo_mi_mean'):.2f} vs MAE's {cell('table1', MAE_T1, 'yahoo_mi_mean'):.2f}, "
                  f"p = {p_value(HIGHEST_MI.format('Yahoo'))})"),
    Quote(RESULTS, "MI on the unscaled posterior, Yahoo", RQ,
          lambda: "on the unscaled posterior its MI is {} on Yahoo, below BN-VAE's {}".format(*other_means(MI_BN.format("Yahoo")))
                  + " and MAE's {}".format(other_means(HIGHEST_MI.format("Yahoo"))[1])),
    Quote(RESULTS, "Scale-VAE's MI on Yelp", T1,
          lambda: f"on Yelp its MI ({cell('table1', S11_T1, 'yelp_mi_mean'):.2f}) is at the whole-split ceiling"),
    Quote(RESULTS, "MI on the unscaled posterior, Yelp", RQ,
          lambda: "unscaled ({}) it is below BN-VAE's {}".format(*other_means(MI_BN.format("Yelp")))),
    Quote(RESULTS, "VAE's AU on Yahoo", T1,
          lambda: f"(mean {cell('table1', 'vae', 'yahoo_au_mean'):.1f} over {seed_counts('table1')['vae']} seeds"),
    # the claims
    Quote(RESULTS, "claim counts", RQ, lambda: f"Of the {claim_counts()}"),
    Quote(RESULTS, "MI over BN-VAE on Yahoo", T1,
          lambda: f"({cell('table1', S11_T1, 'yahoo_mi_mean'):.2f} vs {cell('table1', 'bn_vae(0.6)', 'yahoo_mi_mean'):.2f})"),
    Quote(RESULTS, "the probe with 100 labels against VAE", f"{T4} and {RQ}",
          lambda: f"({cell('table4', S07, 'acc_100_mean'):.1f} vs {cell('table4', 'vae', 'acc_100_mean'):.1f}, "
                  f"p = {p_value('Scale-VAE beats VAE in the linear probe with 100 labels')})"),
    Quote(RESULTS, "the probe with 100 labels against BN-VAE", f"{T4} and {RQ}",
          lambda: f"({cell('table4', S07, 'acc_100_mean'):.1f} vs {cell('table4', 'bn_vae(0.6)', 'acc_100_mean'):.1f}, "
                  f"p = {p_value('Scale-VAE beats BN-VAE in the linear probe with 100 labels')})"),
    Quote(RESULTS, "the Table 3 optimum", f"{T3} and {RQ}",
          lambda: f"(des_std 0.3 at {cell('table3', 'scale_vae(0.3,1)', 'yahoo_nll_mean'):.1f}, not 1.3 at "
                  f"{cell('table3', 'scale_vae(1.3,3)', 'yahoo_nll_mean'):.1f}; "
                  f"p = {p_value('des_std 1.3, f_epo 3 gives the lowest NLL of the Table 3 grid')})"),
    Quote(RESULTS, "the generation claims", f"{T5} and {RQ}", generation),
    Quote(RESULTS, "samples at the length cap", RQ, capped),
    Quote(RESULTS, "the generation claims on uncapped samples", RQ,
          lambda: f"Dist-1 {uncapped(DIST1)}; entropy {uncapped(ENTROPY)}"),
    Quote(RESULTS, "Table 2's shared machine", RQ,
          lambda: re.search(r"(\d+ of \d+ timed runs shared the machine)",
                            report()["Scale-VAE trains faster than VAE on Yahoo (Table 2)"][1]).group(1)),
    Quote(RESULTS, "the latent-space claim over seeds", RQ,
          lambda: "the latent-space claim {} over {} seeds (silhouette {:.3f} vs {:.3f}, p = {})".format(
              latent_claim()[0], latent(S11, BY_LABEL)[2], latent(S11, BY_LABEL)[0], latent("bn_vae(0.6)", BY_LABEL)[0],
              latent_claim()[1])),
    Quote(RESULTS, "BN-VAE's silhouette under random batching", RQ,
          lambda: "BN-VAE's means are cluttered under random batching too ({:.3f} ± {:.3f})".format(
              *latent("bn_vae(0.6)", "batching=random")[:2])),
    # wall time
    Quote(RESULTS, "the 5-seed sweep's wall time", STEP_TABLE,
          lambda: f"**about {about(minutes(*SEEDS))}** of wall time with 2 workers"),
    Quote(RESULTS, "the sweep's runs", PLAN, lambda: f"the {sweep_runs()} runs of"),
    Quote(RESULTS, "the runs ./run_all.sh plans", PLAN, lambda: f"of the {len(planned())} runs `./run_all.sh` plans"),
    Quote(RESULTS, "the ladder's R1 runs", LADDER, lambda: f"the ladder's {ladder_own()} runs at R1, {r1_minutes()} min"),
    Quote(RESULTS, "seed 0 and seed 3", STEP_TABLE,
          lambda: f"`--seeds 1` took {hm(minutes('seed 0'))} min here (beside test suites; seed 3 alone {STEPS['seed 3']})"),
]

LADDER_DOC = "docs/ladder.md"
LADDER_QUOTES = [
    Quote(LADDER_DOC, "R0 beside the study's protocol (a)", f"{LADDER} and {REGIME}",
          lambda: "f_bar {:.2f} here, {:.2f} ± {:.2f} there; NLL {:.1f}, {:.1f} ± {:.1f} there".format(
              ladder().loc[("R0 quick", S11), "f_mean"], sr("a", S11, "f_mean_mean"), sr("a", S11, "f_mean_std"),
              ladder().loc[("R0 quick", S11), "nll"], sr("a", S11, "nll_mean"), sr("a", S11, "nll_std"))),
]

STEADY_QUOTES = [
    Quote(STEADY, "f_bar under (a), with its seeds", REGIME,
          lambda: f"**{sr('a', S07, 'f_mean_mean'):.2f} ± {sr('a', S07, 'f_mean_std'):.2f}** "
                  f"({', '.join(f'{x:.2f}' for x in per_seed_f('a', S07))})"),
    Quote(STEADY, "the NLL gaps of Scale-VAE(0.7, 1) to VAE", REGIME, steady_gaps),
    Quote(STEADY, "BN-VAE's largest gap to VAE", REGIME,
          lambda: f"within {max(sr(p, 'bn_vae(0.6)', 'nll_mean') - sr(p, 'vae', 'nll_mean') for p in 'abc'):.1f} nats of VAE"),
    Quote(STEADY, "the lr 1e-3 study's f_bar, KL and NLL", REGIME_LR1E3,
          lambda: f"f_bar {lr1e3(S07, 'f_bar')} and {lr1e3(S11, 'f_bar')} with the last three epochs within 1% of each "
                  f"other, KL {lr1e3(S07, 'KL')} and {lr1e3(S11, 'KL')}, NLL {lr1e3(S07, 'NLL')} and {lr1e3(S11, 'NLL')} "
                  f"against VAE's {lr1e3('vae', 'NLL')}"),
    Quote(STEADY, "the first batch's factors under (b)", REGIME,
          lambda: f"the first batch's factor is {round(sr('b', S07, 'f_first_batch_mean'), -2):,.0f} (des_std 0.7) and "
                  f"{round(sr('b', S11, 'f_first_batch_mean'), -2):,.0f}"),
    Quote(STEADY, "f_bar after epoch 1 under (b)", REGIME,
          lambda: f"f_bar after epoch 1 is {sr('b', S07, 'f_bar_epoch1_mean'):,.0f} and {sr('b', S11, 'f_bar_epoch1_mean'):,.0f}"),
    Quote(STEADY, "f_bar's seeds under (c)", REGIME, lambda: f"no seed settles here: f_bar ends at {c_seeds()}"),
    Quote(STEADY, "the harmonic f_bar under (b)", REGIME, lambda: f"f_bar {sr('b harmonic', S07, 'f_bar_per_seed')}, AU 0"),
]

PARTS = {"encoder LSTM": "encoder_lstm", "decoder LSTM": "decoder_lstm",
         "its input projection alone (inside the LSTM)": "decoder_lstm_input_projection",
         "output layer + float32 log-softmax": "output_and_log_softmax"}

PERF_QUOTES = [
    Quote(PERF_DOC, "IW-NLL batching at quick", QJ,
          lambda: f"{iw_speedup('cpu-quick', 'fp32')} (float32) and {iw_speedup('cpu-quick', 'bf16')} (bfloat16) at `quick`"),
    Quote(PERF_DOC, "IW-NLL batching at paper sizes", f"{PJ} and {FDJ}",
          lambda: f"{iw_speedup('cpu-paper', 'fp32')} and {iw_speedup('cpu-paper', 'bf16')} at paper sizes over "
                  f"{perf('cpu-paper')['eval']['fp32']['documents_batched']} documents "
                  f"({iw_speedup('cpu-paper-sa_vae_fd')} over {perf('cpu-paper-sa_vae_fd')['eval']['documents_batched']}"),
    Quote(PERF_DOC, "bfloat16 speed-ups", f"{QJ} and {PJ}",
          lambda: f"VAE training step {perf('cpu-paper')['speedup_bf16']['train']['vae']:.2f}× at paper sizes (target ≥ 1.5×) "
                  f"and {perf('cpu-quick')['speedup_bf16']['train']['vae']:.2f}× at `quick`; IW-NLL, batched, "
                  f"{perf('cpu-paper')['speedup_bf16']['iw_nll_batched']:.2f}× at paper sizes (target ≥ 2×) and "
                  f"{perf('cpu-quick')['speedup_bf16']['iw_nll_batched']:.2f}× at `quick`"),
    Quote(PERF_DOC, "Agg-VAE's and SA-VAE's step in VAE steps", QJ,
          lambda: f"costs {span(perf('cpu-quick')['train'][p]['agg_vae']['time_ratio_to_vae'] for p in ('fp32', 'bf16'))} "
                  f"VAE steps, and one SA-VAE step with K = 2 costs "
                  f"{span((perf('cpu-quick')['train'][p]['sa_vae']['time_ratio_to_vae'] for p in ('fp32', 'bf16')), 1)}"),
    Quote(PERF_DOC, "float32 MFU at paper sizes", f"{PJ} and {FDJ}",
          lambda: f"{span(100 * x for x in paper_mfu_fp32())}% of the measured float32 matmul peak in the two committed files"),
    Quote(PERF_DOC, "float32 MFU at quick", QJ,
          lambda: f"at `quick` sizes {100 * perf('cpu-quick')['vae_step']['fp32']['mfu_fp32_peak']:.0f}%."),
    Quote(PERF_DOC, "bfloat16 MFU", f"{PJ} and {QJ}",
          lambda: f"{100 * perf('cpu-paper')['vae_step']['bf16']['mfu_bf16_peak']:.0f}% of the bfloat16 peak at paper sizes and "
                  f"{100 * perf('cpu-quick')['vae_step']['bf16']['mfu_bf16_peak']:.0f}% at `quick`"),
    Quote(PERF_DOC, "the float32 peak per pass", f"{QJ} and {PJ}",
          lambda: f"ranged over {span(perf('cpu-quick')['matmul_peak_gflops_per_pass'])} GFLOP/s (`quick`) and "
                  f"{span(perf('cpu-paper')['matmul_peak_gflops_per_pass'])} GFLOP/s (`paper`)"),
    Quote(PERF_DOC, "padding waste", f"{QJ} and {PJ}",
          lambda: f"{100 * perf('cpu-quick')['padding_waste_train']:.1f}% (`quick`), "
                  f"{100 * perf('cpu-paper')['padding_waste_train']:.1f}% (`paper`)"),
    Quote(PERF_DOC, "peak memory", f"{QJ} and {PJ}",
          lambda: f"{perf('cpu-quick')['peak_memory_mb'] / 1000:.1f} GB (`quick`), "
                  f"{perf('cpu-paper')['peak_memory_mb'] / 1000:.1f} GB (`paper`)"),
    Quote(PERF_DOC, "SA-VAE's finite-difference step at paper sizes", FDJ,
          lambda: f"took {perf('cpu-paper-sa_vae_fd')['train']['sa_vae_fd']['step_ms'] / 1000:.0f} s on this CPU "
                  f"({perf('cpu-paper-sa_vae_fd')['train']['sa_vae_fd']['time_ratio_to_vae']:.1f} VAE steps on the same "
                  f"batch), and the whole benchmark process peaked at {perf('cpu-paper-sa_vae_fd')['peak_memory_mb'] / 1000:.1f} GB"),
    *(Quote(PERF_DOC, f"the MFU table, {name} {p}", f"{PERF}/{name}.json", lambda name=name, p=p: mfu_row(name, p))
      for name in ("cpu-quick", "cpu-paper") for p in ("fp32", "bf16")),
    *(Quote(PERF_DOC, f"the quick training step, {m}", QJ, lambda m=m: train_row("cpu-quick", m, True))
      for m in ("vae", S07, "bn_vae(0.6)", "sa_vae", "agg_vae")),
    *(Quote(PERF_DOC, f"the paper-size training step, {m}", PJ, lambda m=m: train_row("cpu-paper", m, False))
      for m in ("vae", S07, "bn_vae(0.6)")),
    *(Quote(PERF_DOC, f"the bfloat16 parts, {part}", f"{QJ} and {PJ}", lambda label=label, part=part: parts_row(label, part))
      for label, part in PARTS.items()),
    Quote(PERF_DOC, "the same weights at paper sizes", PJ, lambda: same_weights_row("cpu-paper")),
    Quote(PERF_DOC, "the same weights at quick", QJ, lambda: same_weights_row("cpu-quick")),
    Quote(PERF_DOC, "the same weights, trained runs", SAME_WEIGHTS, trained_same_weights),
    Quote(PERF_DOC, "precision: differences at p < 0.05", PRECISION, precision_tests),
    Quote(PERF_DOC, "precision: training time per run", PRECISION, lambda: f"({training_seconds()} per run"),
    Quote(PERF_DOC, "precision: time saved", PRECISION, lambda: f"Training took {time_saved()} less time in bfloat16"),
]

QUOTES = README_QUOTES + RESULTS_QUOTES + STEADY_QUOTES + LADDER_QUOTES + PERF_QUOTES


# --- the tests -----------------------------------------------------------------------------------------

def flat(text: str) -> str:
    """Whitespace runs as one space: a quote may wrap across the page's lines."""
    return re.sub(r"\s+", " ", text)


@cache
def page(doc: str) -> str:
    return flat((ROOT / doc).read_text(encoding="utf-8"))


def page_lines(doc: str) -> list[str]:
    return (ROOT / doc).read_text(encoding="utf-8").splitlines()


def nearest(expected: str, text: str) -> str:
    """What the page says instead: the text around the longest run (3 words or more) of ``expected`` it holds."""
    words = expected.split(" ")
    for n in range(len(words) - 1, 2, -1):
        for start in range(len(words) - n + 1):
            at = text.find(" ".join(words[start:start + n]))
            if at >= 0:
                return repr(text[max(at - 60, 0):at + len(expected) + 60])
    return "no run of 3 of its words"


@pytest.mark.parametrize("quote", QUOTES, ids=lambda x: f"{x.doc}: {x.figure}")
def test_quoted_figure_matches_committed_file(quote: Quote):
    expected, text = flat(quote.text()), page(quote.doc)
    found = expected in text
    assert found, (f"{quote.doc} should quote {quote.figure} as {expected!r} (from {quote.source}); the page has "
                   f"{nearest(expected, text)}: update that sentence, or the file if the page is right")


def test_step_times_are_the_tables_record():
    """The wall times added up above are the ones docs/results-quick.md's slices table shows."""
    missing = [f"{name}: {text}" for name, text in STEPS.items() if f"| {flat(text)} |" not in page(RESULTS)]
    assert not missing, f"{RESULTS}'s slices table no longer shows {missing}; update STEPS and the totals quoted"


STEADY_PROTOCOLS = {"(a) Adam": "a", "(b) SGD, U(±0.01)": "b", "(b), harmonic f_bar": "b harmonic",
                    "(c) shen2021, SGD": "c", "(c), harmonic f_bar": "c harmonic"}
STEADY_ROWS = {"VAE": "vae", "BN-VAE(0.6)": "bn_vae(0.6)", "Scale-VAE(0.7, 1)": S07, "Scale-VAE(1.1, 1)": S11}
STEADY_COLUMNS = ("f_first_batch", "f_bar_epoch1", "f_mean", "kl", "mi", "au", "nll", "nll_unit_prior", "epochs")
NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:e-?[0-9]+)?")


def shown_value(cell: str) -> tuple[float, float] | None:
    """A table cell's first number and half the unit of its last digit ("4e10": 4e10, 5e9), or None when empty."""
    match = NUMBER.search(cell.replace("**", ""))
    if not match:
        return None
    text = match.group(0).replace(",", "")
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return float(text), 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def test_the_steady_state_table_is_the_studys_csv():
    """Every cell of docs/steady-state.md's table is the study CSV's mean, as rounded on the page, and the
    table has every (protocol, row) of the CSV."""
    lines = [x for x in page_lines(STEADY) if x.startswith("| (")]
    seen, wrong = set(), []
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = STEADY_PROTOCOLS[cells[0]], STEADY_ROWS[cells[1]]
        seen.add(key)
        for column, cell in zip(STEADY_COLUMNS, cells[2:], strict=True):
            actual, shown = sr(*key, f"{column}_mean"), shown_value(cell)
            if shown is None:
                wrong += [] if math.isnan(actual) else [f"{key} {column}: empty, the CSV has {actual:g}"]
            elif not abs(shown[0] - actual) <= shown[1] * 1.0001:
                wrong.append(f"{key} {column}: {cell!r}, the CSV has {actual:g}")
    assert not wrong, f"{STEADY}'s table against {REGIME}: {wrong}"
    assert seen == set(regime().index), f"{STEADY}'s table lacks {set(regime().index) - seen}"


def test_a_changed_file_fails_its_quotes(monkeypatch):
    """VAE's Yahoo NLL 1 nat higher in table1.csv: both pages' quotes of Scale-VAE's gap no longer match."""
    original = table
    shifted = original("table1").copy()
    shifted.loc["vae", "yahoo_nll_mean"] += 1
    monkeypatch.setattr(sys.modules[__name__], "table",
                        lambda name, group=QUICK: shifted if (name, group) == ("table1", QUICK) else original(name, group))
    gaps = [x for x in QUOTES if x.figure == "Scale-VAE's NLL gap to VAE"]
    assert {x.doc for x in gaps} == {README, RESULTS}
    for quote in gaps:
        assert flat(quote.text()) not in page(quote.doc), f"{quote.doc}: {quote.figure} did not follow the file"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", [README, RESULTS, PERF_DOC, STEADY, LADDER_DOC, "docs/analysis.md"])
def test_links_into_pages_name_headings_that_exist(doc: str):
    """A link with a #fragment into a markdown page names one of that page's headings."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", (ROOT / doc).read_text(encoding="utf-8")):
        if "#" not in target or re.match(r"^[a-z]+:", target):
            continue
        path, fragment = target.split("#", 1)
        file = ((ROOT / doc).parent / unquote(path)).resolve() if path else ROOT / doc
        if file.suffix == ".md" and file.exists():
            headings = {slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)}
            broken += [] if fragment in headings else [target]
    assert not broken, f"{doc}: links to headings that do not exist: {broken}"
