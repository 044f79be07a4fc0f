"""scripts/setup runs pip only when a pyproject.toml, the plugin list or the extras changed.

The script runs in a copy of the repository layout whose ``.venv/bin/python`` is a stand-in that
records its arguments, so the test shows what would be installed without installing anything.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_checkout(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup", root / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "plugins" / "one").mkdir(parents=True)
    (root / "plugins" / "one" / "pyproject.toml").write_text("[project]\nname = 'one'\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> "{root}/pip-calls"\necho "Collecting something"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return root


def setup(root: Path, *args: str) -> list[str]:
    """Run the script; return the pip installs it made."""
    calls = root / "pip-calls"
    calls.unlink(missing_ok=True)
    result = subprocess.run(["bash", str(root / "scripts" / "setup"), *args], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line for line in lines if line.startswith("-m pip install")]


def test_setup_installs_once_and_again_only_after_a_change(tmp_path):
    root = make_checkout(tmp_path)
    first = setup(root, "--test")
    assert first == ["-m pip install --disable-pip-version-check -e .[test] -e plugins/one/"]
    assert setup(root, "--test") == []
    assert setup(root) == []  # the test install serves the plain one too
    (root / "plugins" / "one" / "pyproject.toml").write_text("[project]\nname = 'one'\nversion = '2'\n")
    assert len(setup(root)) == 1
    assert len(setup(root, "--test")) == 1
    (root / "plugins" / "two").mkdir()
    (root / "plugins" / "two" / "pyproject.toml").write_text("[project]\nname = 'two'\n")
    assert setup(root, "--test") == [
        "-m pip install --disable-pip-version-check -e .[test] -e plugins/one/ -e plugins/two/"]


def test_setup_shows_progress_while_installing(tmp_path):
    root = make_checkout(tmp_path)
    result = subprocess.run(["bash", str(root / "scripts" / "setup")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=30)
    assert "hookproxy setup: " in result.stderr and "  Collecting something" in result.stderr
