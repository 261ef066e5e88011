"""A table of analysis/tables.py as text: LaTeX (booktabs), markdown and CSV.

A cell is the mean (± std) of its finished seeds, in bold where it is its column's best, marked † with
fewer seeds than planned and ‡ where the epoch cap ended a run; a run not there is "—", a failed one
"failed".
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from .tables import Column, Table


LATEX_SYMBOLS = {"†": r"$^\dagger$", "‡": r"$^\ddagger$", "β": r"$\beta$", "δ": r"$\delta$", "☆": r"$^\star$", "±": r"$\pm$", "—": "---", "_": r"\_",
                 "&": r"\&", "%": r"\%", "#": r"\#", "->": r"$\to$", "|": r"$\mid$"}


def latex_escape(text: str) -> str:
    for plain, latex in LATEX_SYMBOLS.items():
        text = text.replace(plain, latex)
    return text


def format_cell(table: Table, row: str, column: Column, with_std: bool, bold: bool, latex: bool) -> str:
    values = table.cell(row, column.key)
    planned, failed = table.planned.get((row, column.key), 0), table.failed.get((row, column.key), 0)
    if not values.size:
        return ("\\textit{failed}" if latex else "failed") if failed else ("---" if latex else "—")
    text = f"{values.mean():.{column.digits}f}"
    if with_std and values.size > 1:
        text += (r" $\pm$ " if latex else " ± ") + f"{values.std(ddof=1):.{column.digits}f}"
    if latex and bold:
        text = f"\\textbf{{{text}}}"
    if values.size < planned:
        text += r"$^\dagger$" if latex else "†"
    if table.capped.get((row, column.key), 0):
        text += r"$^\ddagger$" if latex else "‡"
    return text


def footnotes(table: Table) -> list[str]:
    notes = list(table.notes)
    if any(0 < table.cell(*key).size < n for key, n in table.planned.items()):  # the cells marked †
        notes.append("† fewer finished seeds than planned (missing runs are not yet trained or failed).")
    if any(table.capped.values()):
        notes.append("‡ the epoch cap, not the protocol's stopping rule, ended at least one of its runs "
                     "(stopped_by in metrics.json).")
    return notes


def to_latex(table: Table, with_std: bool = False) -> str:
    best = {c.key: table.best_rows(c) for c in table.columns}
    header_labels = [latex_escape(t) for t in table.label_titles]
    if table.transpose:  # metrics as rows, models as columns
        head = ["Metric"] + [latex_escape(table.labels[r][0]) for r in table.rows]
        body = [[latex_escape(c.title)] + [format_cell(table, r, c, with_std, r in best[c.key], True) for r in table.rows]
                for c in table.columns]
        groups = []
    else:
        head = header_labels + [latex_escape(c.title) for c in table.columns]
        body = [[latex_escape(x) for x in table.labels[r]] +
                [format_cell(table, r, c, with_std, r in best[c.key], True) for c in table.columns] for r in table.rows]
        groups = []
        for column in table.columns:
            if groups and groups[-1][0] == column.group:
                groups[-1][1] += 1
            else:
                groups.append([column.group, 1])
    align = "l" * (1 if table.transpose else len(header_labels)) + "r" * (len(head) - (1 if table.transpose else len(header_labels)))
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             f"\\caption{{{latex_escape(table.caption)}}}", f"\\label{{tab:{table.name}}}",
             f"\\begin{{tabular}}{{{align}}}", r"\toprule"]
    if any(g for g, _ in groups):
        start, spans, rules = len(header_labels) + 1, [], []
        spans.append(" & ".join([""] * len(header_labels)))
        for name, width in groups:
            spans.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(name)}}}" if name else " & ".join([""] * width))
            if name:
                rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines += [" & ".join(spans) + r" \\", "".join(rules)]
    lines += [" & ".join(head) + r" \\", r"\midrule"]
    lines += [" & ".join(cells) + r" \\" for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = footnotes(table)
    if notes:
        lines.append(r"\par\smallskip\footnotesize " + " ".join(latex_escape(n) for n in notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def md(text: str) -> str:
    """A markdown table cell: a '|' inside a row name (the paper's Yahoo | Yelp values) is escaped."""
    return str(text).replace("|", "\\|")


def to_markdown(table: Table, with_std: bool = True) -> str:
    best = {c.key: table.best_rows(c) for c in table.columns}
    titles = [f"{c.group} {c.title}".strip() for c in table.columns]
    lines = ["| " + " | ".join(list(table.label_titles) + titles) + " |", "|" + "---|" * (len(titles) + len(table.label_titles))]
    for r in table.rows:
        cells = [format_cell(table, r, c, with_std, False, False) for c in table.columns]
        cells = [f"**{x}**" if r in best[c.key] else x for x, c in zip(cells, table.columns)]
        lines.append("| " + " | ".join(md(x) for x in list(table.labels[r]) + cells) + " |")
    return "\n".join(lines + [""] + [f"_{n}_" for n in footnotes(table)]) + "\n"


def to_csv(table: Table, path: Path) -> None:
    """One line per row: label, then mean, std and seed count of every column."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", *table.label_titles] + [f"{c.key}_{s}" for c in table.columns for s in ("mean", "std", "n")])
        for r in table.rows:
            cells = []
            for c in table.columns:
                n = table.cell(r, c.key).size
                cells += [_number(table.mean(r, c.key)), _number(table.std(r, c.key)), n]
            writer.writerow([r, *table.labels[r]] + cells)


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"
