"""A plugin author's path from README.md alone: build the core, install the README's plugin into a
fresh virtual environment, run its documented test there.

This is the slowest test of the suite (a venv and the core's dependencies, from the pip cache or
the package index, about a minute). It is part of the normal run, so CI runs it; the ``install``
marker lets a developer leave it out locally with ``-m "not install"``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme_plugin import REPO, write_plugin

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result


def core_source(directory: Path) -> Path:
    """What building the core needs, copied so the build leaves the checkout untouched."""
    directory.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, directory / name)
    shutil.copytree(REPO / "core", directory / "core", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return directory


def test_the_readme_plugin_installs_into_a_fresh_venv_and_its_test_passes(tmp_path: Path):
    source = core_source(tmp_path / "hookproxy")
    plugin = write_plugin(tmp_path / "shouty")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("hookproxy-*.whl")

    run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)  # the core, as the README says
    run(python, "-m", "pip", "install", "-q", "-e", ".[test]", cwd=plugin)  # the plugin, with its test tools

    listed = run(tmp_path / "venv" / "bin" / "hookproxy", "plugins", cwd=tmp_path).stdout
    assert "shouty (hookproxy-shouty 0.1.0)" in listed
    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=plugin)
    assert "2 passed" in tests.stdout
