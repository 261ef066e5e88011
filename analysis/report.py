"""Reproduced vs paper, cell by cell (comparison.md / .tex), the one-page REPORT.md, and the tables
compiled by pdflatex. Tables without a finished run and claims on them are left out of all three."""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.config import load_profile

from .claims import MARKS, Verdict
from .collect import capped_count
from .report_status import frame_markdown, has_runs
from .render import format_cell, latex_escape, md, to_markdown
from .tables import Table, paper_units, protocol_words


def number(value: float, digits: int, sign: str = "") -> str:
    """``value`` with ``digits`` decimals, or 3 significant digits when those decimals would show
    nothing of it (the paper's Dist-2/3 are near 1e-5)."""
    if value == 0 or abs(value) >= 10 ** -digits:
        return f"{value:{sign}.{digits}f}"
    return f"{value:{sign}.3g}"


def comparison_rows(table: Table, paper: dict[tuple[str, str], float], units: dict[str, int] | None = None) -> list[dict]:
    """One record per cell the paper reports: reproduced mean ± std, paper value, difference.

    ``paper`` holds plain numbers (``tables.paper_values`` has already converted a value printed in
    units of E-k); ``units`` ({column key: k}) only adds the printed form beside it."""
    records, units = [], units or {}
    for row in dict.fromkeys([r for r, _ in paper] + table.rows):
        for column in table.columns:
            if (row, column.key) not in paper or column.corpus:  # the paper has no numbers for a user corpus
                continue
            ours, theirs = table.mean(row, column.key), paper[(row, column.key)]
            shown = f"{theirs:g}"
            if column.key in units:
                shown += f" (printed {theirs * 10 ** units[column.key]:g} E-{units[column.key]:02d})"
            records.append({"row": row, "column": f"{column.group} {column.title}".strip(),
                            "reproduced": format_cell(table, row, column, True, False, False) if row in table.rows else "not in this suite",
                            "paper": theirs, "paper_shown": shown,
                            "difference": "" if math.isnan(ours) else number(ours - theirs, column.digits, "+")})
    return records


def unit_note(table: Table, paper: dict[tuple[str, str], float], units: dict[str, int]) -> list[str]:
    """Lines saying which of the paper's columns it printed in units of E-k, and that they were converted."""
    if not units:
        return []
    titles = {c.key: f"{c.group} {c.title}".strip() for c in table.columns}
    printed = ", ".join(f"{titles.get(k, k)} in units of E-{u:02d}" for k, u in units.items())
    row, key = next((r, k) for r, k in paper if k in units)
    example = f"{paper[(row, key)] * 10 ** units[key]:g} E-{units[key]:02d} = {paper[(row, key)]:g}"
    return [f"Units: {', '.join(titles.get(k, k) for k in units)} are plain ratios (distinct / generated n-grams) "
            f"in both columns. The paper prints {printed}; its values are converted to ratios ({example}) before "
            "the difference is taken.", ""]


def corpus_names(tables: dict[str, Table]) -> list[str]:
    """The user corpora the tables show, by name."""
    return list(dict.fromkeys(c.corpus for table in tables.values() for c in table.columns if c.corpus))


def claims_table(verdicts: list[Verdict]) -> list[str]:
    """The claims as a markdown table: verdict (with the way the means lean) and evidence, and a column with
    the verdicts under a quantity's other convention when some claim has one."""
    others = any(v.others for v in verdicts)
    lines = ["| claim | verdict | evidence |" + (" other convention |" if others else ""),
             "|---|---|---|" + ("---|" if others else "")]
    for v in verdicts:
        verdict = v.mark + (f" ({v.convention})" if others and v.convention else "")
        extra = "; ".join(f"{o.convention}: {o.mark} ({o.evidence})" for o in v.others)
        lines.append(f"| {md(v.claim.text)} | {md(verdict)} | {md(v.evidence)} |" + (f" {md(extra)} |" if others else ""))
    return lines


def comparison_markdown(tables: dict[str, Table], papers: dict[str, dict], verdicts: list[Verdict],
                        readings: pd.DataFrame | None) -> str:
    corpora = corpus_names(tables)
    intro = ([f"The runs are on your corpus ({', '.join(corpora)}): the paper has no numbers for it, so the claims",
              "below, checked on it, are what can be compared."] if corpora else
             ["Every cell the paper reports, beside the reproduced mean ± std over seeds (n = seeds finished).",
              "At a profile other than `paper` the absolute values are not comparable; the claims below are",
              "what can be compared."])
    lines = ["# Reproduced vs paper", "", *intro, ""]
    if not any(has_runs(table) for table in tables.values()):
        lines += ["No table has a finished run yet (REPORT.md says what was asked and what was not run).", ""]
    if verdicts:
        counts = pd.Series([v.verdict for v in verdicts]).value_counts()
        lines += ["## The paper's claims", "", *claims_table(verdicts), "",
                  "Verdicts: " + ", ".join(f"{n} {MARKS.get(k, k)}" for k, n in counts.items()) + ".", ""]
    for name, table in tables.items():
        if name not in papers or not has_runs(table) or not comparison_rows(table, papers[name]):
            continue
        units = paper_units(name)
        lines += [f"## {name}", ""] + unit_note(table, papers[name], units)
        lines += ["| row | column | reproduced | paper | difference |", "|---|---|---|---|---|"]
        lines += [f"| {md(r['row'])} | {r['column']} | {r['reproduced']} | {r['paper_shown']} | {r['difference']} |"
                  for r in comparison_rows(table, papers[name], units)]
        lines.append("")
    if readings is not None and not readings.empty:
        lines += ["## Both conventions of every two-convention metric (Table 1 rows)", "",
                  "- `nll` (Table 1): marginal likelihood of the model's generative rule (Scale-VAE: prior",
                  "  N(0, f_bar^2) on the decoder's z); `nll_unit_prior`: the same estimator with a N(0, I) prior",
                  "  (the scaled posterior read as an ordinary VAE posterior). `elbo` and `elbo_unit_prior` are the",
                  "  matching lower bounds; `training_elbo` is the objective at KL weight 1 (for Scale-VAE it mixes",
                  "  the scaled reconstruction with the unscaled KL and bounds neither).",
                  "- `mi` (Table 1): whole-split estimator (BN-VAE/DU-VAE `calc_mi_v3`, the paper's own rows), at",
                  "  most log N; `mi_batch`: He et al.'s per-batch `calc_mi_q` (the paper's starred rows), at most",
                  "  log 32 = 3.47; `mi_unscaled`: whole-split on Scale-VAE's unscaled posterior.",
                  "- `au` (Table 1): the encoder's own means; `au_scaled`: Scale-VAE's scaled means f_bar * mu,",
                  "  whose spread is des_std by construction. For methods other than Scale-VAE the pairs coincide.", "",
                  frame_markdown(readings), ""]
    return "\n".join(lines) + "\n"


def comparison_latex(tables: dict[str, Table], papers: dict[str, dict]) -> str:
    """Each table with runs, with cells "reproduced / paper", in the table's own layout ("" for none)."""
    parts = []
    for name, table in tables.items():
        if name not in papers or not has_runs(table):
            continue
        columns = [c for c in table.columns if not c.corpus]  # the paper has no numbers for a user corpus
        rows = [r for r in table.rows if any((r, c.key) in papers[name] for c in columns)]
        if not rows:
            continue
        head = " & ".join([latex_escape(t) for t in table.label_titles] +
                          [latex_escape(f"{c.group} {c.title}".strip()) for c in columns])
        body = []
        for r in rows:
            cells = []
            for c in columns:
                ours = table.mean(r, c.key)
                theirs = papers[name].get((r, c.key))
                cells.append(("---" if math.isnan(ours) else f"{ours:.{c.digits}f}") + " / " +
                             ("---" if theirs is None else f"{theirs:g}"))
            body.append(" & ".join([latex_escape(x) for x in table.labels[r]] + cells) + r" \\")
        align = "l" * len(table.label_titles) + "r" * len(columns)
        parts += [r"\begin{table}[t]", r"\centering", r"\scriptsize",
                  f"\\caption{{Reproduced / paper: {latex_escape(table.caption)}}}",
                  f"\\label{{tab:{name}-vs-paper}}", r"\resizebox{\textwidth}{!}{%",
                  f"\\begin{{tabular}}{{{align}}}", r"\toprule", head + r" \\", r"\midrule", *body,
                  r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(parts)


def report_markdown(profile: str, runs: pd.DataFrame, tables: dict[str, Table], verdicts: list[Verdict],
                    figures: list[Path], root: Path, extra: list[str], status: list[str] = (),
                    sections: list[str] = ()) -> str:
    """REPORT.md: ``status`` (what was asked, how far it got, what was not run, the verdicts by label), the
    failed runs, the claims ``verdicts`` (those with evidence), ``extra``, the tables with runs, ``sections``
    (markdown lines, e.g. Scale-VAE under both priors) and the figures."""
    corpora = runs[runs["corpus"].fillna("") != ""][["corpus", "dataset", "family"]].drop_duplicates() \
        if "corpus" in runs else pd.DataFrame()
    title = (f"# Scale-VAE's comparison on your corpus: {', '.join(f'`{c}`' for c in dict.fromkeys(corpora['corpus']))}, "
             f"profile `{profile}`" if not corpora.empty else f"# Scale-VAE reproduction: profile `{profile}`")
    lines = [title, "",
             "Generated by `python analysis/make_tables.py` from the results store; every table is also in",
             "`tables/` as LaTeX (booktabs) and CSV, and `tables/comparison.md` "
             + ("lists the claims." if not corpora.empty else "sets each cell beside the paper's."), ""]
    lines += [line for item in status for line in (item, "")]
    if not corpora.empty:
        lines += ["**Your corpus**: " + "; ".join(f"`{r.corpus}` at `{r.dataset}`" + (
                      f", run as {r.family}-like (`--corpus-like {r.family}`: the paper's {r.family.capitalize()} side "
                      f"of its `a | b` rows and the experiments' {r.family} settings)" if isinstance(r.family, str) else "")
                      for r in corpora.itertuples()) + ". The paper has no numbers for it: the claims below are",
                  "checked on it; claims about the other family are left out.", ""]
    if profile != "paper":
        lines += [f"**Profile `{profile}`**: {load_profile(profile).description} ({protocol_words(profile)}). Its",
                  "absolute numbers are not comparable with the paper's; compare orderings and claims.", ""]
    tabulated = [name for name, table in tables.items() if has_runs(table)]  # the studies count their own
    done = runs[(runs["status"] == "done") & runs["experiment"].isin(tabulated)].drop_duplicates("run_id")
    if "capped" in done and len(done):
        lines += [f"Of the {len(done)} finished runs behind the tables, {capped_count(done)} ended at the epoch cap rather "
                  "than by the decay rule (cells with such a run are marked ‡).", ""]
    failed = runs[runs["status"].isin(["failed", "corrupt"])].drop_duplicates("run_id")
    if not failed.empty:
        lines += ["## Failed runs", ""] + [f"- `{r.run_id}`: {r.reason}" for r in failed.itertuples()] + [""]
    if verdicts:
        lines += ["## Claims", "", *claims_table(verdicts), ""]
    lines += extra + [""] if extra else []
    for name, table in tables.items():
        if has_runs(table):
            lines += [f"## {table.caption.split('.')[0]}", "", to_markdown(table), ""]
    lines += list(sections)
    pictures = [f"![{p.stem}]({p.relative_to(root).as_posix()})" for p in figures if p.suffix == ".png"]
    if pictures:
        lines += ["## Figures", ""] + pictures
    return "\n".join(lines).rstrip("\n") + "\n"


WRAPPER = r"""\documentclass{article}
\usepackage[margin=2cm,a4paper]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
%% Every caption here stands above its table: LaTeX's defaults (10pt above a caption, 0pt below)
%% are for captions below, and left a two-line caption touching the table's top rule.
\setlength{\abovecaptionskip}{0pt}
\setlength{\belowcaptionskip}{8pt}
\begin{document}
%s
\end{document}
"""


def compile_tables(tex_files: list[Path], pdf: Path, png: Path | None = None) -> str:
    """Compile the tables in a standalone document with pdflatex (and render page 1 to PNG with pdftoppm).

    Returns one line: what was written, or why nothing was (pdflatex missing, or its error). Nothing is
    written for an engine that is missing."""
    if not tex_files:
        return "no table has a finished run: nothing to compile"
    if shutil.which("pdflatex") is None:
        return (f"pdflatex not found (Debian: apt-get install texlive-latex-recommended): {pdf.name} not written; "
                f"the LaTeX sources are in {pdf.parent}")
    with tempfile.TemporaryDirectory() as work:
        body = "\n\\clearpage\n".join(p.read_text(encoding="utf-8") for p in tex_files)
        Path(work, "tables.tex").write_text(WRAPPER % body, encoding="utf-8")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=work,
                              capture_output=True, text=True, errors="replace")
        if done.returncode != 0:
            error = next((l for l in done.stdout.splitlines() if l.startswith("!")), "see the pdflatex log")
            return f"pdflatex failed: {error}"
        shutil.copy(Path(work, "tables.pdf"), pdf)
    if png is None:
        return f"compiled {pdf}"
    if shutil.which("pdftoppm") is None:
        return f"compiled {pdf}; pdftoppm not found (Debian: apt-get install poppler-utils): page 1 not rendered"
    rendered = subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                               str(png.with_suffix(""))], capture_output=True, text=True, errors="replace")
    if rendered.returncode != 0:
        return f"compiled {pdf}, but pdftoppm could not render page 1: {rendered.stderr.strip()[:160]}"
    return f"compiled {pdf} (page 1: {png})"
