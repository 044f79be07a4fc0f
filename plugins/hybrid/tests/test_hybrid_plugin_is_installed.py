"""The entry-point wiring itself: ``hookproxy plugins`` lists this distribution."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_is_installed(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "hookproxy", "plugins", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("hybrid "))
    assert "(hookproxy-hybrid " in line and "resolve_backend" in line and "settings_model" in line
    assert "hybrid (hybrid.default) [hybrid]: ready" in result.stdout
