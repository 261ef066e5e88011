"""A labelled corpus that is neither Yahoo nor Yelp, made on any machine with this suite installed:
the docstring sentences of four installed libraries (numpy, scipy, pandas, torch), labelled by library.

    python scripts/docstring_corpus.py OUT_DIR [--train 6000] [--valid 500] [--test 500] [--seed 0]

Writes OUT_DIR/{train,valid,test}.txt in the suite's corpus format (``LABEL<TAB>text``, lower-cased,
punctuation split off; docs/your-corpus.md). Sentences of 5-40 tokens, deduplicated, shuffled with
``--seed``. The files depend on the installed versions (requirements.txt pins them). Used to check the
runner's time estimate on a corpus of our own making (issue 25; docs/runner.md).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import random
import re
import sys
from pathlib import Path

LIBRARIES = ["numpy", "scipy", "pandas", "torch"]  # label = index
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.,;:!?()]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def docstrings(package: str):
    """Every docstring of the package's Python files (parsed, never imported)."""
    root = Path(importlib.util.find_spec(package).origin).parent
    for path in sorted(root.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if text := ast.get_docstring(node):
                    yield text


def sentences(text: str, shortest: int = 5, longest: int = 40):
    """The prose sentences of a docstring: its first paragraphs up to a section header or code."""
    prose = []
    for paragraph in text.split("\n\n"):
        if re.search(r"^\s*(-{3,}|>>>|\.\. )", paragraph, re.M):
            break
        prose.append(" ".join(paragraph.split()))
    for sentence in SENTENCE_END.split(" ".join(prose)):
        tokens = TOKEN.findall(sentence.lower())
        if shortest <= len(tokens) <= longest:
            yield " ".join(tokens)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seen, documents = set(), []
    for label, library in enumerate(LIBRARIES):
        for text in docstrings(library):
            for sentence in sentences(text):
                if sentence not in seen:
                    seen.add(sentence)
                    documents.append(f"{label}\t{sentence}")
    random.Random(args.seed).shuffle(documents)
    wanted = args.train + args.valid + args.test
    if len(documents) < wanted:
        print(f"error: only {len(documents)} sentences found, {wanted} asked: lower --train", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    splits = {"train": documents[:args.train], "valid": documents[args.train:args.train + args.valid],
              "test": documents[args.train + args.valid:wanted]}
    for name, lines in splits.items():
        (args.out / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: " + ", ".join(f"{name} {len(lines)}" for name, lines in splits.items())
          + f" documents of {len(documents)} sentences from {', '.join(LIBRARIES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
