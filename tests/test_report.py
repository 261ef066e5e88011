"""REPORT.md fits the run (analysis/report.py, analysis/report_status.py): it counts the runs asked,
names what was not run in one line, leaves out sections without runs, shows Scale-VAE under both
priors and the documents kept per split, and writes no empty LaTeX file when pdflatex is missing."""
import re

import pytest

from analysis import collect, make_tables, report
from benchmarks import plan

from .test_pooling import SCALE, write_run


def finished_run(results, planned, documents=(120, 40, 40), **metrics):
    """A finished run with known metrics and the train.log line that says what documents it kept."""
    run_dir = write_run(results, planned, **metrics)
    (run_dir / "train.log").write_text(f"{planned.run_id}: a corpus; vocabulary 500, "
                                       f"{'/'.join(map(str, documents))} documents, device cpu\n")
    return run_dir


@pytest.fixture
def core(tmp_path):
    """What ``python -m benchmarks.run --profile smoke --only core --seeds 1`` stores."""
    for p in plan.expand("core", "smoke", seeds=1):
        extra = {"f_mean": 1.25, "nll_unit_prior": 99.5} if p.config.model == "scale_vae" else {}
        finished_run(tmp_path, p, **extra)
    return tmp_path


def sections(text: str) -> dict[str, str]:
    """## heading -> its body."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


@pytest.mark.parametrize("options", [[], ["--only", "core", "--seeds", "1"]], ids=["inferred", "given"])
def test_a_cut_down_run_reports_what_was_asked_and_names_the_rest_once(core, options, capsys):
    assert make_tables.main(["--results", str(core), "--no-figures", "--no-pdf", *options]) == 0
    text = (core / "REPORT.md").read_text()
    assert "Runs: 3 of 3 done." in text and "Runs asked: `--only core` `--seeds 1`" in text
    assert ("read from the store" in text) == (not options)
    assert text.count("Not run: ") == 1 and "pending" not in text
    line = next(line for line in text.splitlines() if line.startswith("Not run: "))
    assert "table1, table2, table3, table4, table5" in line and "core" not in line.split("(")[0]
    assert "--profile smoke --seeds 1" in line and "claim(s) on them are left out" in line
    found = sections(text)
    assert all(found.values()), [name for name, body in found.items() if not body]  # no empty section
    assert set(found) == {"Runs of `core`", "Scale-VAE under both priors", "Documents kept per split"}  # no table/claim/figure
    assert [line.split(" | ")[0] for line in found["Runs of `core`"].splitlines() if line.startswith("| ")][1:] == \
        ["| lstm_lm", "| vae", "| scale_vae(0.7,1)"]  # every core row, with its metrics
    assert "| scale_vae(0.7,1) | yahoo_small | 1 | 1.25 | 100.00 | 99.50 |" in found["Scale-VAE under both priors"]
    assert "| yahoo_small | 120 | 40 | 40 | 3 |" in found["Documents kept per split"]
    out = capsys.readouterr().out
    assert "Runs: 3 of 3 done." in out and out.count("Not run: ") == 1
    assert not list((core / "tables").glob("*.tex"))  # no table has a run: no LaTeX at all


def test_the_asked_selection_is_read_from_the_store(core, tmp_path):
    assert collect.infer_selection(core, "smoke") == collect.Selection(["core"], 1, None, ("--seeds", "--only"))
    for p in plan.expand("table2", "smoke"):
        if p.seed >= 3:
            write_run(tmp_path / "late", p)
    assert collect.infer_selection(tmp_path / "late", "smoke") == \
        collect.Selection(["table2"], slice(3, 5), None, ("--seeds", "--only"))
    given = collect.Selection(["table1"], None, ["vae"])  # what is given stands; the rest is read
    assert collect.infer_selection(core, "smoke", given=given) == collect.Selection(["table1"], 1, ["vae"], ("--seeds",))
    assert collect.infer_selection(tmp_path / "empty", "smoke") == collect.Selection()  # nothing stored: everything


@pytest.fixture
def table1(tmp_path):
    """Table 1's VAE and Scale-VAE on Yahoo, 3 seeds each."""
    for p in plan.expand("table1", "smoke", seeds=3):
        if p.row in ("vae", SCALE) and p.dataset == "yahoo_small":
            scale = p.row == SCALE
            finished_run(tmp_path, p, nll=(90.0 if scale else 100.0) + p.seed,
                         **({"f_mean": 2.0, "nll_unit_prior": 95.0 + p.seed} if scale else {"nll_unit_prior": 100.0 + p.seed}))
    return tmp_path


def test_scale_vae_rows_show_f_bar_and_both_priors_and_claims_say_their_labels(table1):
    assert make_tables.main(["--results", str(table1), "--no-figures", "--no-pdf"]) == 0
    text = (table1 / "REPORT.md").read_text()
    assert "| scale_vae(1.1,1\\|1.1,7) | yahoo_small | 3 | 2.00 | 91.00 | 96.00 |" in text
    summary = next(line for line in text.splitlines() if line.startswith("Claims: "))
    assert "✅ holds" in summary and "## Claims" in text and "## Density estimation" in text
    assert "(Table 2)" not in text.split("## Claims")[1].split("\n## ")[0]  # table2 not asked: its claims left out


def test_without_pdflatex_no_compiled_file_is_written_and_one_line_says_why(table1, monkeypatch, capsys):
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    assert make_tables.main(["--results", str(table1), "--no-figures"]) == 0
    out = table1 / "tables"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("pdflatex", "compiled"))]
    assert len(lines) == 1 and "pdflatex not found" in lines[0] and "tables.pdf not written" in lines[0]
    assert not (out / "tables.pdf").exists() and not (out / "tables.png").exists()
    assert all(path.stat().st_size > 0 for path in out.iterdir())
    assert (out / "table1.tex").exists() and (out / "comparison.tex").exists()
    assert report.compile_tables([], out / "tables.pdf") == "no table has a finished run: nothing to compile"



def silhouettes(scale: list[float], bn: list[float]):
    import pandas as pd
    rows = [("scale_vae(1.1,1)", s) for s in scale] + [("bn_vae(0.6)", s) for s in bn]
    return pd.DataFrame([{"row": r, "setting": "batching=by_label", "seed": i, "silhouette": s}
                         for i, (r, s) in enumerate(rows)])


@pytest.mark.parametrize("scale, bn, verdict", [
    ([0.15, 0.19, 0.20, 0.18], [-0.15, -0.13, -0.14, -0.12], "✅ holds"),
    ([-0.15, -0.13, -0.14, -0.12], [0.15, 0.19, 0.20, 0.18], "❌ contradicted"),
    ([0.10, -0.10, 0.12], [0.00, 0.05, -0.02], "➖ not shown (paper's direction)"),
    ([0.15], [-0.15], "⚠️ no verdict: one seed (paper's direction)"),
], ids=["separated", "reversed", "overlapping", "one seed"])
def test_the_latent_space_claim_is_tested_over_seeds(scale, bn, verdict):
    lines = make_tables.latent_clutter(silhouettes(scale, bn))
    claim = next(line for line in lines if line.startswith("Claim"))
    assert f": {verdict} (silhouette " in claim and f"(n={len(scale)}/{len(bn)}, " in claim
    panel = next(line for line in lines if line.startswith("- scale_vae(1.1,1)"))
    assert panel.endswith(f"(n={len(scale)})") and f": {sum(scale) / len(scale):.3f}" in panel


def test_no_latent_space_run_means_no_latent_lines():
    assert make_tables.latent_clutter(None) == [] and make_tables.latent_clutter(silhouettes([], [])) == []
