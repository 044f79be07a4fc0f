"""README.md says what the code does: its settings table, and its example plugin and test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hookproxy.settings_table import BEGIN, END, settings_table
from tests.readme_plugin import REPO, plugin_files, write_plugin


def test_the_settings_table_is_generated_from_the_settings_model():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    documented = readme[readme.index(BEGIN) + len(BEGIN):readme.index(END)].strip()
    assert documented == settings_table(), (
        "README.md's settings table is out of date: run python -m hookproxy.settings_table --update README.md")


def test_the_readme_has_the_whole_example_plugin():
    assert set(plugin_files()) == {"pyproject.toml", "hookproxy_shouty.py", "conftest.py", "tests/test_shouty.py"}


def test_the_readme_plugin_test_passes_as_written(tmp_path: Path):
    """The example test runs unchanged against the example plugin, registered as an installed
    distribution (a dist-info with its entry point) without building anything; the full
    install into a fresh virtual environment is tests/test_plugin_install.py."""
    plugin = write_plugin(tmp_path / "shouty")
    dist_info = plugin / "hookproxy_shouty-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: hookproxy-shouty\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text("[hookproxy]\nshouty = hookproxy_shouty\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=plugin, env={**os.environ, "PYTHONPATH": str(plugin)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
