"""The repository stands alone: no file cites internal spec ids, paths outside the repository,
this machine's directories or issue numbers; each says what it means instead."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".txt", ".cfg", ""}
FORBIDDEN = {
    "a spec id such as H-27 or C-9": re.compile(r"\b[A-Z]{1,2}-\d+\b"),
    "a spec section such as §1.7": re.compile(r"§"),
    "a path outside the repository": re.compile(r"\.\./shared"),
    "an absolute path of a machine": re.compile(r"(?<![\w.])/(?:work|home|root)/"),
    "an issue number": re.compile(r"\bissue #?\d+", re.IGNORECASE),
}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    paths = [REPO / name for name in listed.split("\0") if name]
    return [path for path in paths if path.suffix in SUFFIXES and path.is_file() and path != Path(__file__)]


def test_no_file_cites_what_only_its_authors_could_look_up():
    found = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()[:100]}")
    assert found == [], "\n".join(found)
