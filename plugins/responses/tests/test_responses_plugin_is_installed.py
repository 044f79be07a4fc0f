"""The entry-point wiring itself: ``hookproxy plugins`` lists this distribution and its settings."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_is_installed(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "hookproxy", "plugins", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("responses "))
    assert "(hookproxy-responses " in line and "register_frontends" in line and "settings_model" in line
    help_text = subprocess.run([sys.executable, "-m", "hookproxy", "--help"], capture_output=True, text=True,
                               timeout=60, check=True).stdout
    assert "--responses-store" in help_text and "--responses-store-max-age" in help_text
