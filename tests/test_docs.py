"""The README is the front door: short, with the two commands, and every docs page reachable.

Checks README.md and docs/*.md: every relative link resolves, the README names
``./run_all.sh`` and ``./run_tests.sh`` and stays within its line budget, and every
docs page is linked from the README. No network; reads files only.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 160

# [text](target) and ![alt](target); the target ends at the first space (an optional
# "title" may follow) or at the closing parenthesis. Text may hold `code` but no brackets.
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def strip_code(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are not links)."""
    kept, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            kept.append("")
            continue
        kept.append("" if in_fence else re.sub(r"`[^`\n]*`", "``", line))
    return "\n".join(kept)


def links(text: str) -> list[str]:
    return LINK.findall(strip_code(text))


def relative_targets(path: Path) -> list[tuple[str, Path]]:
    """(link as written, file or folder it names) for every relative link in ``path``."""
    out = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto:, ... and same-page anchors
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        out.append((target, (path.parent / file_part).resolve()))
    return out


def test_docs_folder_exists():
    assert DOCS.is_dir() and list(DOCS.glob("*.md")), "docs/ should hold the pages the README points to"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = [target for target, resolved in relative_targets(path) if not resolved.exists()]
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"


def test_readme_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    for command in ("./run_all.sh", "./run_tests.sh"):
        assert command in text, f"README.md should name {command}"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, over the budget of {README_MAX_LINES}; move detail to docs/")


def test_every_docs_page_is_linked_from_readme():
    linked = {resolved for _, resolved in relative_targets(README)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_link_parser():
    """The checks above are only as good as the link parser."""
    text = ("see [a](docs/a.md), ![img](x/y.png \"title\") and [b](docs/b.md#part)\n"
            "[web](https://example.org) [here](#anchor) `[not](a-link.md)`\n"
            "```\n[not](in-a-fence.md)\n```\n")
    assert links(text) == ["docs/a.md", "x/y.png", "docs/b.md#part", "https://example.org", "#anchor"]
