"""Tables 1-5 of the paper (LaTeX + CSV), the comparison with the paper, figures and REPORT.md.

    python analysis/make_tables.py [--results results] [--out results/tables] [--profile P] [--std]
        [--datasets DIR[,DIR...] [--corpus-like yahoo|yelp]]

Works on whatever runs exist: missing runs show as "—", failed ones as
"failed". Figures go to OUT/../figures and the report to OUT/../REPORT.md.
Runs on your own corpus (``python -m benchmarks.run --datasets DIR``) are
tabulated with the same ``--datasets``/``--corpus-like``; without them, when
every stored run of the profile is on user corpora, those corpora and the family
their runs took are read from the runs' configurations.
The linear probe (Table 4), the generated text and its statistics (Table 5) and the
latent-space figure's points are read from each run's record, written when the run was
scored (benchmarks/derived.py): a store without checkpoints gives the same tables. The
PPL of a run's generated text under the LSTM-LM of its seed is read from its record too,
or computed from the LM's best.pt and written there; a run of an older store whose record
lacks a file is computed from its own best.pt.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import pandas as pd  # noqa: E402

from analysis import claims, collect, report, tables  # noqa: E402
from analysis import precision as precision_check  # noqa: E402
from analysis import ladder, steady_state  # noqa: E402
from analysis.collect import finished  # noqa: E402
from benchmarks.errors import UserError  # noqa: E402
from benchmarks import plan  # noqa: E402
from benchmarks.plan import split_list  # noqa: E402


def derived(runs: pd.DataFrame, experiment: str, compute) -> dict[str, dict]:
    """run_id -> compute(run) for the finished runs of an experiment; a run that cannot be analysed is
    reported in one line and left out (its cells then show as missing)."""
    results = {}
    for run in finished(runs, experiment).itertuples():
        try:
            results[run.run_id] = compute(run)
        except (UserError, OSError, RuntimeError, ValueError) as error:
            print(f"warning: {run.run_id}: {error}; its {experiment} cells are left empty", file=sys.stderr)
    return results


def probes(runs: pd.DataFrame, data_dir, cache_dir) -> dict[str, dict]:
    from analysis import probe
    return derived(runs, "table4", lambda run: probe.linear_probe(run.run_dir, data_dir=data_dir, cache_dir=cache_dir))


def generations(runs: pd.DataFrame, data_dir, cache_dir) -> dict[str, dict]:
    """Table 5: each VAE run's generated text, scored by the LSTM-LM of the same dataset and seed. A PPL
    that is neither stored nor computable (no finished LM, or no LM checkpoint) leaves its cell empty,
    with one line; the run's other cells stand."""
    from analysis import generation
    lms = {(r.dataset, r.seed): r.run_dir for r in finished(runs, "table5").itertuples() if r.method == "lstm_lm"}
    vaes = runs[runs["method"] != "lstm_lm"]

    def compute(run):
        lm = lms.get((run.dataset, run.seed))
        try:
            return generation.generation_metrics(run.run_dir, lm, data_dir=data_dir, cache_dir=cache_dir)
        except generation.NoPerplexity as missing:
            why = missing if lm is not None else f"no finished LSTM-LM of seed {run.seed} to score the generated text"
            print(f"warning: {run.run_id}: {why}; its PPL cell is left empty", file=sys.stderr)
            return missing.metrics
    return derived(vaes, "table5", compute)


CONVENTIONS = ["nll", "nll_unit_prior", "elbo", "elbo_unit_prior", "training_elbo", "mi", "mi_batch", "mi_unscaled",
               "au", "au_scaled", "f_mean"]


def conventions(runs: pd.DataFrame) -> pd.DataFrame:
    """Every reading of the metrics that have two conventions, for each Table 1 row (mean over finished seeds)."""
    done = finished(runs, "table1")
    if done.empty:
        return pd.DataFrame()
    grouped = done.groupby(["row", "dataset"], sort=False)[CONVENTIONS].mean()
    return grouped.reset_index().rename(columns={"f_mean": "f_bar"})


def build_tables(runs: pd.DataFrame, profile: str, data_dir=None, cache_dir=None,
                 skipped: dict[str, str] | None = None) -> dict[str, tables.Table]:
    """Tables 1-5; ``skipped``: {experiment: why} of the experiments that do not run on the user corpus."""
    built = {"table1": tables.table1(runs, profile), "table2": tables.table2(runs, profile),
             "table3": tables.table3(runs, profile), "table4": tables.table4(runs, profile, probes(runs, data_dir, cache_dir)),
             "table5": tables.table5(runs, profile, generations(runs, data_dir, cache_dir))}
    for name, why in (skipped or {}).items():
        if name in built:
            tables.mark_skipped(built[name], why)
    return built


def paper_table1_frame(table: tables.Table, values) -> pd.DataFrame:
    """Table 1 as the figure module wants it: index rows, columns (family, metric)."""
    columns = pd.MultiIndex.from_tuples([(c.group, c.title) for c in table.columns])
    return pd.DataFrame([[values(r, c.key) for c in table.columns] for r in table.rows], index=table.rows, columns=columns)


def make_figures(runs: pd.DataFrame, built: dict, papers: dict, figures_dir: Path, data_dir, cache_dir) -> tuple[list[Path], list[str]]:
    from analysis import figures
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths, extra = [], []
    latent = figures.latent_space(runs, figures_dir, data_dir=data_dir, cache_dir=cache_dir)
    paths += latent.get("paths", [])
    silhouettes = latent.get("silhouette", {})
    if silhouettes:
        extra += ["Latent-space clutter (synthetic data, silhouette of the posterior means by Gaussian component, "
                  "lowest seed; higher = less clutter):", ""]
        extra += [f"- {row}, {setting}: {score:.3f}" for (row, setting), score in sorted(silhouettes.items())]
        by_label = {row: s for (row, setting), s in silhouettes.items() if setting == "batching=by_label"}
        if len(by_label) == 2:
            scale = next(s for r, s in by_label.items() if r.startswith("scale_vae"))
            bn = next(s for r, s in by_label.items() if r.startswith("bn_vae"))
            extra += ["", f"Claim \"with one Gaussian component per mini-batch, Scale-VAE's latent space is less "
                          f"cluttered than BN-VAE's\": {'holds' if scale > bn else 'does not hold'} "
                          f"(silhouette {scale:.3f} vs {bn:.3f}; one seed, no test)."]
    paths += figures.training_curves(runs, figures_dir)
    table1 = built["table1"]
    paper = papers["table1"]
    if any(c.corpus for c in table1.columns):  # the paper has no numbers for a user corpus
        return [Path(p) for p in paths], extra
    paths += figures.paper_comparison_bars(paper_table1_frame(table1, table1.mean),
                                           paper_table1_frame(table1, lambda r, k: paper.get((r, k), float("nan"))),
                                           figures_dir, caption=table1.caption)
    return [Path(p) for p in paths], extra


def seed_selection(seeds: int | slice | None) -> str:
    """How the report names a ``--seeds`` selection ("" for every seed)."""
    if seeds is None:
        return ""
    if isinstance(seeds, slice):
        return f"`--seeds {seeds.start}:{seeds.stop}`: seeds {seeds.start} to {seeds.stop - 1} of each experiment only"
    return f"`--seeds {seeds}`: the first {seeds} seed(s) of each experiment only"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python analysis/make_tables.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="results directory (with runs/)")
    parser.add_argument("--out", default=None, help="where the tables go (default RESULTS/tables)")
    parser.add_argument("--profile", default=None, help="profile to tabulate (default: the one most runs used)")
    parser.add_argument("--std", action="store_true", help="show mean ± std in the LaTeX tables")
    parser.add_argument("--datasets", default=None,
                        help="as given to python -m benchmarks.run (default: the user corpora of the stored runs "
                             "when all of them are on corpora, else the experiments' own datasets)")
    parser.add_argument("--corpus-like", default=None, metavar="yahoo|yelp",
                        help="as given to python -m benchmarks.run (default: the family the corpus runs took)")
    parser.add_argument("--seeds", default=None, help="as given to python -m benchmarks.run: N (the first N seeds "
                        "of each experiment) or FROM:TO (seeds FROM to TO-1), e.g. to compare two groups of seeds")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--no-pdf", action="store_true", help="do not compile the tables with pdflatex")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # means of empty cells are shown as "—"
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "tables"
    root = out.parent
    try:
        if not (results / "runs").is_dir():
            raise UserError(f"no results store at {results}/runs; run ./run_all.sh (or pass --results DIR)")
        profile = args.profile or collect.infer_profile(results)
        datasets, corpus_like = split_list(args.datasets), args.corpus_like
        if datasets is None:
            datasets, corpus_like, notes = collect.infer_datasets(results, profile, corpus_like)
            for line in notes:
                print(line)
        seeds = plan.parse_seeds(args.seeds)
        runs = collect.collect(results, profile, datasets, corpus_like, seeds)
        corpora = plan.corpora_of(datasets)
        skips = plan.corpus_skips(None, corpora)  # one line per experiment left out on a corpus
        skipped = {}  # experiment -> why, when it runs on none of the corpora
        for name in plan.available() if corpora else []:
            reasons = list(dict.fromkeys(plan.corpus_skip(name, c) for c in corpora))
            if None not in reasons:
                skipped[name] = "; ".join(reasons)
        out.mkdir(parents=True, exist_ok=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {out}: {error.strerror}; pass a writable --out DIR", file=sys.stderr)
        return 2
    built = build_tables(runs, profile, args.data_dir, args.cache_dir, skipped)
    papers = {name: tables.paper_values(name) for name in built}
    tex_files = []
    for name, table in built.items():
        (out / f"{name}.tex").write_text(tables.to_latex(table, args.std), encoding="utf-8")
        tables.to_csv(table, out / f"{name}.csv")
        tex_files.append(out / f"{name}.tex")
    verdicts = claims.check_all(built)
    (out / "comparison.md").write_text(report.comparison_markdown(built, papers, verdicts, conventions(runs)),
                                       encoding="utf-8")
    (out / "comparison.tex").write_text(report.comparison_latex(built, papers), encoding="utf-8")
    figures, extra = ([], []) if args.no_figures else make_figures(runs, built, papers, root / "figures",
                                                                     args.data_dir, args.cache_dir)
    study = steady_state.write(runs, out, None if args.no_figures else root / "figures")
    if study:
        extra += ["Scale-VAE at steady state (the `scale_regime` study): "
                  f"[{study[0].name}]({os.path.relpath(study[0], root)}).", ""]
        figures += study[1:]
    rungs = ladder.write(runs, out, None if args.no_figures else root / "figures")
    if rungs:
        extra += ["Scale-VAE from the quick profile toward the paper's scale (the `ladder` study): "
                  f"[{rungs[0].name}]({os.path.relpath(rungs[0], root)}).", ""]
        figures += rungs[1:]
    checked = precision_check.write(runs, out, args.data_dir, args.cache_dir)
    if checked:
        summary = checked.read_text(encoding="utf-8").split("Differences in a metric found", 1)
        extra += ["Precision check, float32 against bfloat16 (the `precision` experiment): "
                  f"[{checked.name}]({os.path.relpath(checked, root)}).", ""]
        if len(summary) == 2:
            extra += ["Differences in a metric found" + summary[1].split("\n", 1)[0], ""]
    if skips:
        extra = ["Experiments left out on your corpus:", ""] + [f"- {line}" for line in skips] + ["", *extra]
    (root / "REPORT.md").write_text(report.report_markdown(profile, runs, built, verdicts, figures, root, extra,
                                                           seed_selection(seeds)), encoding="utf-8")
    if not args.no_pdf:
        problem = report.compile_tables(tex_files + [out / "comparison.tex"], out / "tables.pdf", out / "tables.png")
        print(problem or f"compiled {out / 'tables.pdf'} (page 1: {out / 'tables.png'})")
    status = runs.drop_duplicates("run_id")["status"].value_counts().to_dict()
    print(f"profile {profile}: {status}; tables in {out}, report {root / 'REPORT.md'}")
    print("claims: " + ", ".join(f"{v.verdict}: {sum(w.verdict == v.verdict for w in verdicts)}"
                                 for v in {v.verdict: v for v in verdicts}.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
