"""The layout's import rules, read from the source with ``ast`` (nothing is imported):
``models`` imports neither ``benchmarks`` nor ``analysis``, ``benchmarks`` does not import
``analysis``, the results store does not import the data package, the sweep (``benchmarks.run``)
does not load the performance benchmark, and the modules of the data package import one way. Every import counts: at module level or inside a function, absolute or
relative (also a relative import that reaches out of its package), ``importlib.import_module``."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Modules of benchmarks/data/, bottom first: each may import only those before it.
DATA_ORDER = ["documents", "batching", "sources", "cache", "subsets", "registry", "corpus"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every dotted name ``path`` imports, relative imports resolved against its package; for
    ``from X import y`` both ``X`` and ``X.y`` (y may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[: max(len(parts) - (node.level - 1), 0)]  # beyond the top: the repository root
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target:
                found.add(target)
            found.update(f"{target}.{alias.name}" if target else alias.name for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            found.add(node.args[0].value)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def modules(package: str) -> list[Path]:
    paths = sorted((ROOT / package).rglob("*.py"))
    assert paths, f"no module found under {package}/"
    return paths


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {name}"
            for path in modules(package) for name in sorted(imports(path))
            if any(within(name, f) for f in forbidden)]


def source_file(name: str) -> Path | None:
    """The repository file of a module or package, or None (the standard library, torch, ...)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def closure(name: str) -> set[str]:
    """The repository modules that importing ``name`` may load: its imports, theirs, and the
    packages above each (importing ``a.b`` runs ``a/__init__.py``)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        parts = current.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            path = source_file(prefix)
            if path is not None and prefix not in seen:
                seen.add(prefix)
                todo.extend(imports(path))
    return seen


def test_models_import_neither_benchmarks_nor_analysis():
    assert len(modules("models")) > 10
    found = violations("models", ("benchmarks", "analysis"))
    assert not found, "; ".join(found)


def test_benchmarks_do_not_import_analysis():
    assert len(modules("benchmarks")) > 10
    found = violations("benchmarks", ("analysis",))
    assert not found, "; ".join(found)


def test_the_store_does_not_import_the_data_package():
    store = ROOT / "benchmarks" / "store.py"
    direct = [name for name in imports(store) if within(name, "benchmarks.data")]
    assert direct == [], f"benchmarks/store.py imports {direct}"
    assert "benchmarks.files" in closure("benchmarks.store")  # the atomic writer it shares with the data layer
    loaded = sorted(name for name in closure("benchmarks.store") if within(name, "benchmarks.data"))
    assert loaded == [], f"importing benchmarks.store loads {loaded}"


def test_the_sweep_path_does_not_load_the_performance_benchmark():
    loaded = sorted(name for name in closure("benchmarks.run")
                    if name in ("benchmarks.perf", "benchmarks.precision"))
    assert loaded == [], f"importing benchmarks.run loads {loaded}: share timing code through benchmarks/timers.py"
    assert "benchmarks.timers" in closure("benchmarks.run")  # the calibration times its steps with it


@pytest.mark.parametrize("module", DATA_ORDER)
def test_the_data_package_imports_one_way(module):
    assert sorted(p.stem for p in (ROOT / "benchmarks" / "data").glob("*.py") if p.stem != "__init__") \
        == sorted(DATA_ORDER), "a module was added to or removed from benchmarks/data/: place it in DATA_ORDER"
    below = DATA_ORDER[: DATA_ORDER.index(module)]
    wrong = sorted(name for name in imports(ROOT / "benchmarks" / "data" / f"{module}.py")
                   if within(name, "benchmarks.data") and name != "benchmarks.data"
                   and name.split(".")[2] not in below)  # a later module, or a name of the package's __init__
    assert wrong == [], f"benchmarks/data/{module}.py imports {wrong}, which is not below it"
