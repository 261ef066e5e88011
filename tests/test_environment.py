"""The pip requirements and the conda environment pin the same packages and versions."""
import re
import subprocess
import sys

from .conftest import REPO


def pins(lines, pattern):
    return {m.group(1).lower(): m.group(2) for m in map(re.compile(pattern).match, lines) if m}


def test_environment_yml_and_requirements_pin_the_same_versions():
    requirements = pins((REPO / "requirements.txt").read_text().splitlines(), r"^([A-Za-z0-9_.-]+)==([^\s#]+)")
    env_lines = (REPO / "environment.yml").read_text().splitlines()
    conda = pins(env_lines, r"^\s+-\s+([A-Za-z0-9_.-]+)=([^=\s#]+)$")
    pip = pins(env_lines, r"^\s+-\s+([A-Za-z0-9_.-]+)==([^\s#]+)$")
    conda.pop("python", None)
    assert requirements and "torch" in requirements
    assert {**conda, **pip} == requirements
    assert requirements["torch"] == "2.13.0"


def test_installed_versions_match_the_pins():
    from importlib.metadata import version
    requirements = pins((REPO / "requirements.txt").read_text().splitlines(), r"^([A-Za-z0-9_.-]+)==([^\s#]+)")
    for name, pinned in requirements.items():
        assert version(name).split("+")[0] == pinned, name


def test_models_cli_lists_every_method():
    listing = subprocess.run([sys.executable, "-m", "models"], cwd=REPO, capture_output=True, text=True, check=True)
    assert listing.stdout.splitlines()[0].split()[:3] == ["name", "hyperparameters", "citation"]
    for name in ("lstm_lm", "vae", "scale_vae"):
        assert any(line.startswith(name + " ") for line in listing.stdout.splitlines())
