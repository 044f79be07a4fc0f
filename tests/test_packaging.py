"""Every distribution of the repository, as installed, points people at its source, its own
README and the issue tracker (``pip show -v``'s Project-URLs, a package index's sidebar)."""

from __future__ import annotations

import subprocess
import sys

HOME = "https://github.com/hookproxy/hookproxy"
#: Distribution name: where its README lives in the repository.
READMES = {
    "hookproxy": "README.md",
    "hookproxy-anthropic": "plugins/anthropic/README.md",
    "hookproxy-hybrid": "plugins/hybrid/README.md",
    "hookproxy-qwen-oauth": "plugins/qwen_oauth/README.md",
    "hookproxy-responses": "plugins/responses/README.md",
}


def project_urls(pip_show: str) -> dict[str, dict[str, str]]:
    """``pip show -v`` output as {distribution: {label: url}}."""
    urls: dict[str, dict[str, str]] = {}
    name, in_urls = "", False
    for line in pip_show.splitlines():
        if line.startswith("Name: "):
            name, in_urls = line.removeprefix("Name: "), False
            urls[name] = {}
        elif line.startswith("Project-URLs:"):
            in_urls = True
        elif in_urls and line.startswith("  "):
            label, _, url = line.strip().partition(", ")
            urls[name][label] = url
        else:
            in_urls = False
    return urls


def test_every_distribution_names_its_homepage_documentation_and_issues():
    shown = subprocess.run([sys.executable, "-m", "pip", "show", "-v", *READMES], capture_output=True, text=True,
                           timeout=60, check=True).stdout

    assert project_urls(shown) == {
        name: {"Homepage": HOME, "Documentation": f"{HOME}/blob/main/{readme}", "Issues": f"{HOME}/issues"}
        for name, readme in READMES.items()}
