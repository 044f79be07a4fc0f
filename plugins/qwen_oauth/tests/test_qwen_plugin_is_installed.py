"""`hookproxy plugins` lists the installed qwen-oauth plugin, its distribution, hooks and state."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def test_hookproxy_plugins_lists_qwen_oauth(creds_path: Path, qwen_config: Callable[..., Path]) -> None:
    result = subprocess.run([sys.executable, "-m", "hookproxy", "plugins", "--config", str(qwen_config())],
                            capture_output=True, text=True, timeout=60, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("qwen-oauth "))
    assert "(hookproxy-qwen-oauth " in line
    for hook in ("on_rate_limit", "prepare_request", "resolve_backend", "settings_model"):
        assert hook in line
    backend = next(line for line in result.stdout.splitlines() if "qwen-oauth.test" in line)
    assert "not usable" in backend and "not found" in backend and str(creds_path) in backend


def test_help_offers_the_gate_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "hookproxy", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "--enable-qwen-oauth-backend-debugging-override" in result.stdout
