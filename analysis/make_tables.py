"""Tables 1-5 of the paper (LaTeX + CSV), the comparison with the paper, figures and REPORT.md.

    python analysis/make_tables.py [--results DIR [--results DIR ...]] [--out results/tables] [--profile P]
        [--std] [--only E[,E...]] [--seeds N | --seeds FROM:TO] [--models M[,M...]]
        [--datasets DIR[,DIR...] [--corpus-like yahoo|yelp]]

Works on whatever runs exist: missing runs show as "—", failed ones as
"failed". Figures go to OUT/../figures and the report to OUT/../REPORT.md.
Several ``--results`` (the flag repeated, one directory each) are pooled: a run id
in two stores with the same metrics is one run, with other metrics it is refused in
one line naming both; with several stores ``--out`` is required (no store's
folder is chosen for you). ``--only``, ``--seeds`` and ``--models`` say what was
asked, as ``python -m benchmarks.run`` takes them (``./run_all.sh`` passes its own);
left out, they are read from the stores: the seeds of their runs, the experiments
whose runs are all there and the fewest others that cover the rest ("Runs asked" in
the report says so). The report counts the runs asked, names in one line
the experiments not run (their claims left out), and leaves out tables without a
finished run; no table without one is written, and nothing is compiled without pdflatex.
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

from analysis import claims, collect, render, report, tables  # noqa: E402
from analysis import precision as precision_check  # noqa: E402
from analysis import ladder, report_status, steady_state  # noqa: E402
from analysis.collect import Selection, finished  # noqa: E402
from analysis.report_status import has_runs  # noqa: E402
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


def conventions(runs: pd.DataFrame, experiments=("table1",)) -> pd.DataFrame:
    """Every reading of the metrics that have two conventions, for each row of ``experiments`` (mean over
    finished seeds, n of them)."""
    parts = [finished(runs, e) for e in experiments]
    done = pd.concat(parts).drop_duplicates("run_id") if parts else pd.DataFrame()
    if done.empty:
        return pd.DataFrame()
    keys = ["row", "dataset"] + (["setting"] if done["setting"].fillna("").astype(bool).any() else [])
    grouped = done.groupby(keys, sort=False)
    frame = grouped[CONVENTIONS].mean().join(grouped.size().rename("n")).reset_index()
    return frame[[*keys, "n", *CONVENTIONS]].rename(columns={"f_mean": "f_bar"})


def scale_readings(runs: pd.DataFrame) -> pd.DataFrame:
    """Scale-VAE's rows of the paper's tables (not the studies'), in every convention: the report's f_bar
    and NLL under N(0, I) beside the NLL under its own prior."""
    scale = runs[runs["method"] == "scale_vae"]
    return conventions(scale, [e for e in dict.fromkeys(scale["experiment"]) if e not in collect.STUDIES])


UNTABLED = ("core",)  # experiments whose runs no table or study shows: the report lists their metrics


def untabled_readings(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of the asked experiments that no table shows (``core``), in every convention."""
    return conventions(runs, [e for e in UNTABLED if e in set(runs["experiment"])])


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


CLUTTER_CLAIM = "with one Gaussian component per mini-batch, Scale-VAE's latent space is less cluttered than BN-VAE's"


def latent_clutter(seeds: pd.DataFrame | None) -> list[str]:
    """REPORT.md's lines on the latent-space study: each panel's silhouette over its seeds, and the
    paper's claim (its "latent space property" experiment: batches of one component clutter BN-VAE's
    latent space, not Scale-VAE's) by Welch's t-test of Scale-VAE's against BN-VAE's silhouettes
    under that batching (``claims.compare``: a verdict as the other claims get)."""
    if seeds is None or seeds.empty or (seeds := seeds.dropna(subset=["silhouette"])).empty:
        return []
    lines = ["Latent-space clutter (synthetic data, silhouette of the decoder-side posterior means by Gaussian "
             "component, mean ± std over the finished seeds; higher = less clutter; the figure shows the lowest seed):", ""]
    for (row, setting), values in seeds.groupby(["row", "setting"], sort=True)["silhouette"]:
        spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
        lines.append(f"- {row}, {setting}: {values.mean():.3f}{spread} (n={len(values)})")
    by_label = seeds[seeds["setting"] == "batching=by_label"]
    scale, bn = (by_label.loc[by_label["row"].str.startswith(m), "silhouette"].to_numpy(float)
                 for m in ("scale_vae", "bn_vae"))
    if scale.size and bn.size:
        verdict, evidence, direction = claims.compare(scale, bn, want_less=False)
        lines += ["", f"Claim \"{CLUTTER_CLAIM}\": {claims.mark_of(verdict, direction)} (silhouette {evidence})."]
    return lines


def make_figures(runs: pd.DataFrame, built: dict, papers: dict, figures_dir: Path, data_dir, cache_dir) -> tuple[list[Path], list[str]]:
    from analysis import figures
    paths, extra = [], []
    latent = figures.latent_space(runs, figures_dir, data_dir=data_dir, cache_dir=cache_dir)
    paths += latent.get("paths", [])
    extra += latent_clutter(latent.get("seeds"))
    paths += figures.training_curves(runs, figures_dir)
    table1 = built["table1"]
    paper = papers["table1"]
    if any(c.corpus for c in table1.columns) or not has_runs(table1):  # no numbers of the paper's to set beside
        return [Path(p) for p in paths], extra
    paths += figures.paper_comparison_bars(paper_table1_frame(table1, table1.mean),
                                           paper_table1_frame(table1, lambda r, k: paper.get((r, k), float("nan"))),
                                           figures_dir, caption=table1.caption,
                                           reproduced_std=paper_table1_frame(table1, table1.std))
    return [Path(p) for p in paths], extra


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python analysis/make_tables.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", action="append", default=None, metavar="DIR",
                        help="results directory (with runs/); repeat the flag to pool several stores (a run id in two "
                             "of them with other metrics is refused). Default: results")
    parser.add_argument("--out", default=None, help="where the tables go (default RESULTS/tables; required with several "
                                                    "--results); figures go to OUT/../figures, the report to OUT/../REPORT.md")
    parser.add_argument("--profile", default=None, help="profile to tabulate (default: the one most runs used)")
    parser.add_argument("--std", action="store_true", help="show mean ± std in the LaTeX tables")
    parser.add_argument("--only", default=None, help="as given to python -m benchmarks.run: the experiments asked "
                        "(default: read from the stores: the experiments whose runs are all there, and the fewest "
                        "others that cover the rest of their runs)")
    parser.add_argument("--models", default=None, help="as given to python -m benchmarks.run: the rows or methods asked "
                        "(default: every row)")
    parser.add_argument("--datasets", default=None,
                        help="as given to python -m benchmarks.run (default: the user corpora of the stored runs "
                             "when all of them are on corpora, else the experiments' own datasets)")
    parser.add_argument("--corpus-like", default=None, metavar="yahoo|yelp",
                        help="as given to python -m benchmarks.run (default: the family the corpus runs took)")
    parser.add_argument("--seeds", default=None, help="as given to python -m benchmarks.run: N (the first N seeds "
                        "of each experiment) or FROM:TO (seeds FROM to TO-1), e.g. to compare two groups of seeds "
                        "(default: the seeds of the stored runs)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--no-pdf", action="store_true", help="do not compile the tables with pdflatex")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    return parser.parse_args(argv)


def write_tables(built: dict[str, tables.Table], papers: dict, out: Path, with_std: bool) -> list[Path]:
    """``NAME.tex``/``.csv`` of every table with a finished run, and ``comparison.tex`` when it has content;
    a table's files from an earlier call are removed when it has none now. Returns the .tex files written."""
    written = []
    for name, table in built.items():
        paths = (out / f"{name}.tex", out / f"{name}.csv")
        if not has_runs(table):
            for path in paths:
                path.unlink(missing_ok=True)
            continue
        paths[0].write_text(render.to_latex(table, with_std), encoding="utf-8")
        render.to_csv(table, paths[1])
        written.append(paths[0])
    comparison = report.comparison_latex(built, papers)
    if comparison.strip():
        (out / "comparison.tex").write_text(comparison, encoding="utf-8")
        written.append(out / "comparison.tex")
    else:
        (out / "comparison.tex").unlink(missing_ok=True)
    return written


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # means of empty cells are shown as "—"
    results = [Path(r) for r in args.results or ["results"]]
    out = Path(args.out) if args.out else results[0] / "tables"
    root = out.parent
    try:
        if len(results) > 1 and not args.out:
            raise UserError("several --results are pooled: pass --out DIR for the tables (the report goes to "
                            "DIR/../REPORT.md), e.g. --out pooled/tables")
        for store in results:
            if not (store / "runs").is_dir():
                raise UserError(f"no results store at {store}/runs; run ./run_all.sh (or pass --results DIR)")
        profile = args.profile or collect.infer_profile(results)
        datasets, corpus_like = split_list(args.datasets), args.corpus_like
        if datasets is None:
            datasets, corpus_like, notes = collect.infer_datasets(results, profile, corpus_like)
            for line in notes:
                print(line)
        given = Selection(split_list(args.only), plan.parse_seeds(args.seeds), split_list(args.models))
        selection = collect.infer_selection(results, profile, datasets, corpus_like, given)
        runs = collect.collect(results, profile, datasets, corpus_like, selection.seeds, selection.experiments,
                               selection.models)
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
    tex_files = write_tables(built, papers, out, args.std)
    verdicts = claims.check_all(built, runs)
    shown = report_status.with_evidence(verdicts, built)
    (out / "comparison.md").write_text(report.comparison_markdown(built, papers, shown, conventions(runs)),
                                       encoding="utf-8")
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
    missing = report_status.not_run(runs, skipped)
    status = [report_status.asked_line(selection), report_status.status_line(runs),
              report_status.not_run_line(missing, len(verdicts) - len(shown),
                                         report_status.runner_options(profile, selection, datasets, corpus_like, results)),
              report_status.verdict_summary(shown)]
    sections = (report_status.untabled(untabled_readings(runs)) + report_status.scale_priors(scale_readings(runs))
                + report_status.documents(collect.kept_documents(runs)))
    (root / "REPORT.md").write_text(report.report_markdown(profile, runs, built, shown, figures, root, extra,
                                                           [line for line in status if line], sections),
                                    encoding="utf-8")
    if not args.no_pdf:
        print(report.compile_tables(tex_files, out / "tables.pdf", out / "tables.png"))
    print(f"profile {profile}: {status[1]} {status[0].replace('`', '')}")
    for line in status[2:]:
        if line:
            print(line)
    print(f"tables in {out}, report {root / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
