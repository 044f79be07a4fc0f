"""The example plugin of README.md ("Write your own backend"), read from the README itself.

Each code block there that starts with a ``# <path>`` comment is one file of the plugin; tests
write those files out exactly as a plugin author would copy them.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"```(?:toml|python)\n# (?P<path>[\w/.]+\.(?:toml|py))\n(?P<body>.*?)```", re.DOTALL)


def plugin_files() -> dict[str, str]:
    """Relative path -> content for every file of the README's example plugin."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Write your own backend"):]
    section = section[: section.index("\n## ", 1)]
    return {match["path"]: f"# {match['path']}\n{match['body']}" for match in _BLOCK.finditer(section)}


def write_plugin(directory: Path) -> Path:
    for relative, text in plugin_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory
