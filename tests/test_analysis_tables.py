"""Tables, claims and the report on a hand-built results store with known values."""
import csv
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from scipy import stats

from analysis import claims, collect, generation, make_tables, render, report, tables
from benchmarks import plan
from benchmarks.errors import UserError
from benchmarks.metrics import METRICS_VERSION
from .helpers import write_finished_run

VAE_NLL = [100.0, 102.0, 104.0, 106.0, 108.0]
SCALE_NLL = [90.0, 91.0, 92.0, 93.0, 94.0]
SCALE = "scale_vae(1.1,1|1.1,7)"


write_run = write_finished_run


@pytest.fixture
def store(tmp_path):
    """Smoke-profile table1 runs: VAE and Scale-VAE(1.1,1) with known NLLs, one failed BN-VAE seed,
    one corrupt run, everything else missing."""
    runs = {(p.row, p.seed): p for p in plan.expand("table1", "smoke")}
    for seed in range(5):
        write_run(tmp_path, runs[("vae", seed)], nll=VAE_NLL[seed], au=0, kl=0.01)
        write_run(tmp_path, runs[(SCALE, seed)], nll=SCALE_NLL[seed], nll_unit_prior=SCALE_NLL[seed] - 1,
                  au=4, mi=2.0 + seed / 10, train_seconds=1800.0, f_mean=3.0)
    failed = tmp_path / "runs" / runs[("bn_vae(0.6)", 0)].run_id
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text(json.dumps({"reason": "loss became nan in epoch 2", "epoch": 2}))
    corrupt = write_run(tmp_path, runs[("cyclical", 0)], nll=1.0)
    (corrupt / "metrics.json").write_text('{"nll": 1')  # truncated
    return tmp_path


def test_collect_reports_every_planned_run_with_its_status(store):
    runs = collect.collect(store, "smoke")
    table1 = runs[runs["experiment"] == "table1"]
    assert len(table1) == len(plan.expand("table1", "smoke"))
    status = table1.set_index(["row", "seed"])["status"]
    assert status[("vae", 3)] == "done" and status[("bn_vae(0.6)", 0)] == "failed"
    assert status[("cyclical", 0)] == "corrupt" and status[("skip_vae", 0)] == "pending"
    assert collect.infer_profile(store) == "smoke"


@pytest.mark.parametrize("version", [None, METRICS_VERSION - 1])
def test_runs_scored_by_older_metrics_are_refused_with_the_command_that_rescores_them(store, version, capsys):
    runs = {(p.row, p.seed): p for p in plan.expand("table1", "smoke")}
    stale = {"metrics_version": version} if version else {}  # no field at all: version 1
    path = write_run(store, runs[("vae", 0)], nll=VAE_NLL[0], au=0, kl=0.01)
    values = json.loads((path / "metrics.json").read_text())
    values.pop("metrics_version")
    (path / "metrics.json").write_text(json.dumps({**values, **stale}))
    with pytest.raises(UserError, match=rf"1 run\(s\) of version {version or 1}.*python -m benchmarks.evaluate --results"):
        collect.collect(store, "smoke")
    assert make_tables.main(["--results", str(store), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "benchmarks.evaluate" in err


def test_table1_means_stds_bold_missing_and_failed_cells(store):
    table = tables.table1(collect.collect(store, "smoke"), "smoke")
    assert table.rows == plan.rows_of(plan.load("table1"), "table1")  # every row, none dropped
    assert table.mean("vae", "yahoo_nll") == pytest.approx(104.0)
    assert table.std("vae", "yahoo_nll") == pytest.approx(np.std(VAE_NLL, ddof=1))
    assert table.best_rows(next(c for c in table.columns if c.key == "yahoo_nll")) == {SCALE}
    latex = render.to_latex(table, with_std=True)
    lines = {line.split(" & ")[0]: line for line in latex.splitlines() if " & " in line}
    assert r"\textbf{92.0 $\pm$ 1.6}" in lines[render.latex_escape(tables.row_title(SCALE))]
    assert "104.0 $\\pm$ 3.2" in lines["VAE"] and "textbf" not in lines["VAE"].split(" & ")[1]
    assert lines["Skip-VAE"].count("---") == 4  # missing runs: a dash per cell, the row kept
    assert r"\textit{failed}" in lines["BN-VAE (0.6)"]
    assert "profile smoke" in latex and "not comparable" in latex  # a CPU-scale table says so


def test_only_cells_with_some_but_not_all_seeds_get_the_dagger(store):
    runs = {(p.row, p.seed): p for p in plan.expand("table1", "smoke")}
    for seed in range(5):  # a language model: no KL/MI/AU, which must not count as missing seeds
        write_run(store, runs[("lstm_lm", seed)], nll=110.0, kl=None, mi=None, au=None)
    latex = render.to_latex(tables.table1(collect.collect(store, "smoke"), "smoke"))
    assert "fewer finished seeds" not in latex and r"\dagger" not in latex
    for seed in range(2):
        write_run(store, runs[("skip_vae", seed)], nll=99.0)
    latex = render.to_latex(tables.table1(collect.collect(store, "smoke"), "smoke"))
    skip = next(line for line in latex.splitlines() if line.startswith("Skip-VAE &"))
    assert r"99.0$^\dagger$" in skip and "fewer finished seeds" in latex


def test_csv_carries_mean_std_and_seed_count(store, tmp_path):
    table = tables.table1(collect.collect(store, "smoke"), "smoke")
    render.to_csv(table, tmp_path / "t.csv")
    rows = {r["row"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    assert float(rows["vae"]["yahoo_nll_mean"]) == pytest.approx(104.0)
    assert rows["vae"]["yahoo_nll_n"] == "5" and rows["skip_vae"]["yahoo_nll_mean"] == ""


def test_table2_hours_and_ratio_to_vae(store):
    table = tables.table2(collect.collect(store, "smoke"), "smoke")
    assert table.mean("vae", "yahoo_hours") == pytest.approx(1.0)
    assert table.mean(SCALE, "yahoo_hours") == pytest.approx(0.5)
    assert table.mean(SCALE, "yahoo_ratio") == pytest.approx(0.5)
    assert table.mean("vae", "yahoo_ratio") == pytest.approx(1.0)


def test_claims_use_welch_t_tests_and_say_not_run(store):
    built = {"table1": tables.table1(collect.collect(store, "smoke"), "smoke")}
    verdicts = {v.claim.text: v for v in claims.check_all(built)}
    lower = verdicts["Scale-VAE(1.1, 1) has a lower NLL than VAE on Yahoo"]
    assert lower.verdict == claims.HOLDS
    p = stats.ttest_ind(SCALE_NLL, VAE_NLL, equal_var=False).pvalue
    assert f"p={p:.3g}" in lower.evidence
    assert verdicts["Vanilla VAE's AU is near 0 on Yahoo (posterior collapse; AU <= 1)"].verdict == claims.HOLDS
    assert verdicts["Scale-VAE keeps all 32 units active on Yahoo"].verdict == claims.CONTRADICTED  # AU 4 every seed
    assert verdicts["Scale-VAE(1.1, 1) has a lower NLL than BN-VAE(0.6) on Yahoo"].verdict == claims.NOT_RUN
    assert verdicts["Scale-VAE trains faster than VAE on Yahoo (Table 2)"].verdict == claims.NOT_RUN  # no table2 given


def hand_table(cells: dict[str, list[float]], ceiling: float | None = None) -> tables.Table:
    rows = list(cells)
    table = tables.Table("table1", "", rows, [tables.Column("yahoo_mi", "MI")])
    table.values = {(r, "yahoo_mi"): np.array(v) for r, v in cells.items()}
    if ceiling is not None:
        table.ceilings["yahoo_mi"] = ceiling
    return table


def test_highest_mi_is_checked_against_the_baselines_not_other_scale_vae_rows():
    claim = next(c for c in claims.CLAIMS if c.text == "Scale-VAE has the highest MI of Table 1 on Yahoo")
    table = hand_table({SCALE: [3.0, 3.1, 3.2], "scale_vae(0.7,1|0.7,1)": [5.0, 5.1, 5.2],
                        "vae": [0.1, 0.2, 0.1], "bn_vae(0.6)": [1.0, 1.1, 0.9]})
    verdict = claims.check(claim, table)
    assert verdict.verdict == claims.HOLDS and "best baseline bn_vae(0.6)" in verdict.evidence
    table.values[("du_vae(0.6,0.8)", "yahoo_mi")] = np.array([4.0, 4.1, 4.2])
    table.rows.append("du_vae(0.6,0.8)")
    assert claims.check(claim, table).verdict == claims.CONTRADICTED


def test_claims_on_values_at_the_estimators_ceiling_get_no_verdict():
    claim = next(c for c in claims.CLAIMS if c.text == "Scale-VAE has a higher MI than BN-VAE(0.6) on Yahoo")
    cells = {SCALE: [6.18, 6.19, 6.2], "bn_vae(0.6)": [4.0, 4.1, 4.2]}
    assert claims.check(claim, hand_table(cells)).verdict == claims.HOLDS  # no ceiling known: a verdict
    capped = claims.check(claim, hand_table(cells, ceiling=6.2146))
    assert capped.verdict == claims.AT_CEILING and "6.21" in capped.evidence and SCALE in capped.evidence
    assert claims.check(claim, hand_table(cells, ceiling=9.21)).verdict == claims.HOLDS  # far below log 10,000
    highest = next(c for c in claims.CLAIMS if c.text == "Scale-VAE has the highest MI of Table 1 on Yahoo")
    assert claims.check(highest, hand_table(cells, ceiling=6.2146)).verdict == claims.AT_CEILING


def test_table1_records_the_mi_ceiling_of_the_test_split(store):
    runs = collect.collect(store, "smoke")
    runs.loc[runs["status"] == "done", "mi_ceiling"] = np.log(40)
    table = tables.table1(runs, "smoke")
    assert table.ceilings["yahoo_mi"] == pytest.approx(np.log(40))
    assert any("log 40 = 3.69" in note for note in table.notes)


def test_a_difference_in_the_right_direction_but_not_significant_is_not_shown():
    verdict, evidence, direction = claims.compare(np.array([1.0, 3.0, 2.0]), np.array([2.0, 1.5, 3.0]), want_less=True)
    assert verdict == claims.NOT_SHOWN and "not significant" in evidence and direction == claims.PAPERS_WAY


def test_paper_numbers_have_the_papers_shape():
    shapes = {"table1": (17, 8, 2), "table2": (3, 4, 0), "table3": (9, 4, 0), "table4": (10, 5, 0), "table5": (2, 8, 0)}
    for name, (rows, columns, blanks) in shapes.items():
        values = tables.paper_values(name)
        assert len({r for r, _ in values}) == rows, name
        assert len({c for _, c in values}) == columns, name
        assert len(values) == rows * columns - blanks * 3 * (name == "table1"), name  # LSTM-LM has no KL/MI/AU
    assert tables.paper_values("table1")[("scale_vae(1.1,1|1.1,7)", "yahoo_nll")] == 321.3
    assert tables.paper_values("table5")[("bn_vae(0.6)", "dist3")] == pytest.approx(1.69e-5)  # printed 1.69 (E-05)
    assert tables.paper_values("table5")[("scale_vae(1.1,1)", "dist1")] == pytest.approx(1.33e-2)  # printed 1.33 (E-02)
    assert tables.paper_values("table5")[("bn_vae(0.6)", "ppl")] == 260.44  # no unit, unchanged


def test_paper_rows_name_the_suites_rows():
    for name in ("table1", "table2", "table3"):
        papers = {row for row, _ in tables.paper_values(name)}
        assert papers == set(plan.rows_of(plan.load(name), name)), name


def test_make_tables_end_to_end_on_partial_results(store, capsys):
    out = store / "tables"
    assert make_tables.main(["--results", str(store), "--out", str(out), "--no-figures", "--no-pdf"]) == 0
    assert (out / "table1.tex").read_text().count(r"\toprule") == 1 and (out / "table1.csv").exists()
    for name in ("table2", "table3", "table4", "table5"):  # not asked (read from the store): no file, no section
        assert not (out / f"{name}.tex").exists() and not (out / f"{name}.csv").exists()
    comparison = (out / "comparison.md").read_text()
    assert "| vae | Yahoo NLL | 104.0 ± 3.2 | 328.6 | -224.6 |" in comparison
    assert "nll_unit_prior" in comparison
    report = (store / "REPORT.md").read_text()
    assert "loss became nan in epoch 2" in report and "not comparable" in report
    assert "Runs asked: `--only table1`" in report and "Runs: 10 of 85 done, 73 pending" in report
    assert report.count("Not run: ") == 1 and "## Density estimation" in report and "(Table 2)" not in report
    assert make_tables.main(["--results", str(store / "nowhere")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_a_seed_selection_tabulates_those_seeds_alone_and_says_so(store, capsys):
    """Two groups of seeds of one store (e.g. a second machine's --seeds 3:5) give their own tables."""
    for seeds, cell in (("3:5", "107.0 ± 1.4"), ("2", "101.0 ± 1.4")):
        out = store / f"tables-{seeds}"
        assert make_tables.main(["--results", str(store), "--out", str(out), "--no-figures", "--no-pdf",
                                 "--seeds", seeds]) == 0
        assert f"| vae | Yahoo NLL | {cell} |" in (out / "comparison.md").read_text()
        assert f"`--seeds {seeds}`" in (store / "REPORT.md").read_text()
    assert make_tables.main(["--results", str(store), "--seeds", "5:3", "--no-figures", "--no-pdf"]) == 2
    assert "FROM:TO" in capsys.readouterr().err


def test_the_tables_compile_with_pdflatex(store, tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex missing in CI: .ci/run installs texlive-latex-recommended")
        pytest.skip("pdflatex not installed here (CI installs it)")
    out = store / "tables"
    assert make_tables.main(["--results", str(store), "--out", str(out), "--no-figures", "--std"]) == 0
    assert (out / "tables.pdf").stat().st_size > 10_000
    png = out / "tables.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    shutil.copy(png, tmp_path / "page1.png")  # left for a person to look at
    if shutil.which("pdftotext"):  # poppler-utils, beside pdftoppm: the compiled page holds the numbers
        text = subprocess.run(["pdftotext", "-layout", str(out / "tables.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "Density estimation" in text and "104.0 ± 3.2" in text


def test_the_comparison_converts_the_papers_dist_units_to_ratios(tmp_path, monkeypatch):
    (tmp_path / "table5.csv").write_text("metric,label,bn_vae(0.6)\nppl,PPL,260.44\ndist2,Dist-2 (E-05),2.50\n"
                                         "dist1,Dist-1 (E-02),0.82\n")
    monkeypatch.setattr(tables, "PAPER_DIR", tmp_path)
    paper = tables.paper_values("table5")
    assert paper == {("bn_vae(0.6)", "ppl"): 260.44, ("bn_vae(0.6)", "dist2"): 2.5e-5, ("bn_vae(0.6)", "dist1"): 0.0082}
    table = tables.Table("table5", "Generation", ["bn_vae(0.6)"],
                         [tables.Column("dist2", "Dist-2", digits=4), tables.Column("dist1", "Dist-1", digits=4)])
    table.values = {("bn_vae(0.6)", "dist2"): np.array([3e-5, 4e-5]), ("bn_vae(0.6)", "dist1"): np.array([0.05])}
    rows = {r["column"]: r for r in report.comparison_rows(table, paper, tables.paper_units("table5"))}
    assert rows["Dist-2"]["difference"] == "+1e-05"  # 3.5e-5 - 2.5e-5, not 3.5e-5 - 2.5
    assert rows["Dist-2"]["paper_shown"] == "2.5e-05 (printed 2.5 E-05)"
    assert rows["Dist-1"]["difference"] == "+0.0418"  # 0.05 - 0.0082
    markdown = report.comparison_markdown({"table5": table}, {"table5": paper}, [], None)
    assert "| bn_vae(0.6) | Dist-1 | 0.0500 | 0.0082 (printed 0.82 E-02) | +0.0418 |" in markdown
    assert "Dist-2 in units of E-05" in markdown and "plain ratios" in markdown


def test_table5_caption_names_the_word_budget_and_notes_capped_samples(store):
    runs = collect.collect(store, "smoke")
    caption = tables.table5(runs, "smoke", {}).caption
    assert f"exactly the first {generation.DEFAULT_TOKENS:,} generated words" in caption
    assert "E-05" in caption and "hundreds of times below" in caption
    bn = runs[(runs["experiment"] == "table5") & (runs["row"] == "bn_vae(0.6)")]["run_id"].tolist()
    results = {bn[0]: {"token_budget": 5000, "tokens": 5000, "max_tokens": 21, "capped": 3, "sentences": 400},
               bn[1]: {"token_budget": 5000, "tokens": 4000, "max_tokens": 21, "capped": 0, "sentences": 5000}}
    table = tables.table5(runs, "smoke", results)
    assert "exactly the first 5,000 generated words" in table.caption and "at most 21 tokens each" in table.caption
    assert "</s>" not in table.caption  # markdown would take it for an HTML tag
    assert "BN-VAE (0.6) 3 of 5,400." in table.notes[0] and "too short" in table.notes[1]


def test_the_compiled_tables_keep_captions_off_the_top_rule():
    # LaTeX's defaults put 10pt above a caption and none below; captions above tables need the reverse
    assert r"\setlength{\belowcaptionskip}{8pt}" in report.WRAPPER
    assert r"\setlength{\abovecaptionskip}{0pt}" in report.WRAPPER
    assert report.WRAPPER.index("belowcaptionskip") < report.WRAPPER.index(r"\begin{document}")


def test_every_caption_names_the_profile_s_protocol_lineage_and_optimiser(store, monkeypatch):
    runs = collect.collect(store, "smoke")
    assert "protocol lineage he2019 (He et al.'s text.py), Adam lr 0.003" in tables.table1(runs, "smoke").caption
    assert "protocol lineage he2019 (He et al.'s text.py), SGD lr 1" in tables.scale_caption("T", "paper", [])
    from benchmarks.config import load_profile
    monkeypatch.setattr(tables, "load_profile", lambda name: load_profile(name, {"lineage": "shen2021"}))
    assert "protocol lineage shen2021 (DU-VAE's text.py), SGD lr 1" in tables.scale_caption("T", "paper", [])


def test_a_comparison_with_one_seed_on_a_side_gets_no_verdict():
    claim = next(c for c in claims.CLAIMS if c.text == "Scale-VAE has a higher MI than BN-VAE(0.6) on Yahoo")
    one = claims.check(claim, hand_table({SCALE: [5.0], "bn_vae(0.6)": [4.0]}))
    assert one.verdict == claims.ONE_SEED and "n=1/1" in one.evidence and "paper's direction" in one.evidence
    assert claims.check(claim, hand_table({SCALE: [5.0, 5.0], "bn_vae(0.6)": [4.0, 4.0]})).verdict == claims.HOLDS
    assert claims.check(claim, hand_table({SCALE: [3.0], "bn_vae(0.6)": [4.0, 4.1]})).verdict == claims.ONE_SEED
