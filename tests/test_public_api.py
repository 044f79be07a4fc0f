"""Plugins, built-in ones included, import only the core's public API.

The public API is the ``hookproxy`` package itself plus the documented modules listed in its
docstring; everything else in ``core/hookproxy`` may change without notice. A plugin that reaches
past it would break on the next refactoring, so this is checked for every plugin in the repo.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hookproxy

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = {"hookproxy", "hookproxy.errors", "hookproxy.frontend", "hookproxy.hookspecs", "hookproxy.observe",
                  "hookproxy.routing", "hookproxy.sse", "hookproxy.state", "hookproxy.testing",
                  "hookproxy.upstream_errors"}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return {module for module in modules if module.split(".")[0] == "hookproxy"}


def test_plugins_import_only_documented_core_modules():
    """Plugin code (not its tests, which may drive the CLI and factory) stays on the public API."""
    sources = list((ROOT / "plugins").glob("*/hookproxy_*/**/*.py"))
    assert sources, "no plugin sources found"
    for path in sources:
        private = imported_modules(path) - PUBLIC_MODULES
        assert not private, f"{path.relative_to(ROOT)} imports {sorted(private)}, which are not public API"


def test_the_public_modules_are_documented():
    doc = hookproxy.__doc__ or ""
    for module in PUBLIC_MODULES - {"hookproxy"}:
        assert f"``{module}``" in doc, f"{module} is public but not listed in hookproxy's docstring"


def test_a_front_end_fails_a_stream_start_with_the_public_bad_stream():
    """``Frontend.started`` raises BadStream for a failed start; plugins reach it from ``hookproxy``."""
    from hookproxy.streamcheck import BadStream

    assert hookproxy.BadStream is BadStream and "BadStream" in hookproxy.__all__
    assert BadStream("x").status == 502 and BadStream.fail_over_at_once
