"""Reproduced vs paper, cell by cell (comparison.md / .tex), and the one-page REPORT.md."""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from .claims import Verdict
from .tables import Table, format_cell, latex_escape, md, to_markdown

MARKS = {"holds": "✅ holds", "does not hold": "❌ does not hold", "not run": "— not run"}


def comparison_rows(table: Table, paper: dict[tuple[str, str], float]) -> list[dict]:
    """One record per cell the paper reports: reproduced mean ± std, paper value, difference."""
    records = []
    for row in dict.fromkeys([r for r, _ in paper] + table.rows):
        for column in table.columns:
            if (row, column.key) not in paper:
                continue
            ours, theirs = table.mean(row, column.key), paper[(row, column.key)]
            records.append({"row": row, "column": f"{column.group} {column.title}".strip(),
                            "reproduced": format_cell(table, row, column, True, False, False) if row in table.rows else "not in this suite",
                            "paper": theirs, "difference": "" if math.isnan(ours) else f"{ours - theirs:+.{column.digits}f}"})
    return records


def comparison_markdown(tables: dict[str, Table], papers: dict[str, dict], verdicts: list[Verdict],
                        unit_prior: pd.DataFrame | None) -> str:
    lines = ["# Reproduced vs paper", "",
             "Every cell the paper reports, beside the reproduced mean ± std over seeds (n = seeds finished).",
             "At a profile other than `paper` the absolute values are not comparable; the claims below are",
             "what can be compared.", "", "## The paper's claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {md(v.claim.text)} | {MARKS[v.verdict]} | {md(v.evidence)} |" for v in verdicts]
    counts = pd.Series([v.verdict for v in verdicts]).value_counts()
    lines += ["", "Verdicts: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + ".", ""]
    for name, table in tables.items():
        if name not in papers:
            continue
        lines += [f"## {name}", "", "| row | column | reproduced | paper | difference |", "|---|---|---|---|---|"]
        lines += [f"| {md(r['row'])} | {r['column']} | {r['reproduced']} | {r['paper']:g} | {r['difference']} |"
                  for r in comparison_rows(table, papers[name])]
        lines.append("")
    if unit_prior is not None and not unit_prior.empty:
        lines += ["## Scale-VAE's NLL under both readings", "",
                  "`nll` (used in Table 1) is the marginal likelihood of Scale-VAE's generative model, prior",
                  "N(0, f_bar^2) on the decoder's z; `nll_unit_prior` treats the scaled posterior as an ordinary",
                  "VAE posterior with a N(0, I) prior (protocol.md). For other methods the two coincide.", "",
                  frame_markdown(unit_prior), ""]
    return "\n".join(lines) + "\n"


def frame_markdown(frame: pd.DataFrame) -> str:
    cells = lambda values: "| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else md(v) for v in values) + " |"
    return "\n".join([cells(frame.columns), "|" + "---|" * len(frame.columns)] +
                     [cells(r) for r in frame.itertuples(index=False)])


def comparison_latex(tables: dict[str, Table], papers: dict[str, dict]) -> str:
    """Each table with cells "reproduced / paper", in the table's own layout."""
    parts = []
    for name, table in tables.items():
        if name not in papers:
            continue
        rows = [r for r in table.rows if any((r, c.key) in papers[name] for c in table.columns)]
        head = " & ".join([latex_escape(t) for t in table.label_titles] +
                          [latex_escape(f"{c.group} {c.title}".strip()) for c in table.columns])
        body = []
        for r in rows:
            cells = []
            for c in table.columns:
                ours = table.mean(r, c.key)
                theirs = papers[name].get((r, c.key))
                cells.append(("---" if math.isnan(ours) else f"{ours:.{c.digits}f}") + " / " +
                             ("---" if theirs is None else f"{theirs:g}"))
            body.append(" & ".join([latex_escape(x) for x in table.labels[r]] + cells) + r" \\")
        align = "l" * len(table.label_titles) + "r" * len(table.columns)
        parts += [r"\begin{table}[t]", r"\centering", r"\scriptsize",
                  f"\\caption{{Reproduced / paper: {latex_escape(table.caption)}}}",
                  f"\\label{{tab:{name}-vs-paper}}", r"\resizebox{\textwidth}{!}{%",
                  f"\\begin{{tabular}}{{{align}}}", r"\toprule", head + r" \\", r"\midrule", *body,
                  r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(parts)


def report_markdown(profile: str, runs: pd.DataFrame, tables: dict[str, Table], verdicts: list[Verdict],
                    figures: list[Path], root: Path, extra: list[str]) -> str:
    counts = runs.drop_duplicates("run_id")["status"].value_counts()
    lines = [f"# Scale-VAE reproduction: profile `{profile}`", "",
             "Generated by `python analysis/make_tables.py` from the results store; every table is also in",
             "`tables/` as LaTeX (booktabs) and CSV, and `tables/comparison.md` sets each cell beside the paper's.", "",
             "Runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (of {counts.sum()} distinct runs planned).", ""]
    if profile != "paper":
        lines += [f"**Profile `{profile}` is a CPU-scale setting**: small data, small networks, few epochs. Its",
                  "absolute numbers are not comparable with the paper's; compare orderings and claims.", ""]
    failed = runs[runs["status"].isin(["failed", "corrupt"])].drop_duplicates("run_id")
    if not failed.empty:
        lines += ["## Failed runs", ""] + [f"- `{r.run_id}`: {r.reason}" for r in failed.itertuples()] + [""]
    lines += ["## Claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {md(v.claim.text)} | {MARKS[v.verdict]} | {md(v.evidence)} |" for v in verdicts] + [""] + extra + [""]
    for name, table in tables.items():
        lines += [f"## {table.caption.split('.')[0]}", "", to_markdown(table), ""]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(root).as_posix()})" for p in figures if p.suffix == ".png"]
    return "\n".join(lines) + "\n"


WRAPPER = r"""\documentclass{article}
\usepackage[margin=2cm,a4paper]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
%s
\end{document}
"""


def compile_tables(tex_files: list[Path], pdf: Path, png: Path | None = None) -> str | None:
    """Compile the tables in a standalone document with pdflatex (and render page 1 to PNG).

    Returns None on success, else one line saying why (pdflatex missing, or its error)."""
    if shutil.which("pdflatex") is None:
        return "pdflatex not found (Debian: apt-get install texlive-latex-recommended); tables not compiled"
    with tempfile.TemporaryDirectory() as work:
        body = "\n\\clearpage\n".join(p.read_text(encoding="utf-8") for p in tex_files)
        Path(work, "tables.tex").write_text(WRAPPER % body, encoding="utf-8")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=work,
                              capture_output=True, text=True, errors="replace")
        if done.returncode != 0:
            error = next((l for l in done.stdout.splitlines() if l.startswith("!")), "see the pdflatex log")
            return f"pdflatex failed: {error}"
        shutil.copy(Path(work, "tables.pdf"), pdf)
    if png is not None and shutil.which("pdftoppm"):
        rendered = subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                                   str(png.with_suffix(""))], capture_output=True, text=True, errors="replace")
        if rendered.returncode != 0:
            return f"compiled {pdf}, but pdftoppm could not render page 1: {rendered.stderr.strip()[:160]}"
    return None
