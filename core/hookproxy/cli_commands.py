"""The subcommands beside serving: ``check``, ``init`` and ``demo``.

``check`` loads everything ``hookproxy`` would (flags, environment, config file, instance files,
plugins) and prints what would be served, without listening. ``init`` writes the commented
starter configuration shipped in the package. ``demo`` serves the built-in demo backend, so a
first streamed answer needs neither a model nor a key.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .cli import _describe_backends, _fail, _load, _Parser, config_source_line, public_host_refusal, serve
from .config import INSTANCES_DIR
from .demo import demo_config_path
from .plugins import list_plugins, make_plugin_manager

CHECK_DESCRIPTION = (
    "Validate the configuration (flags, HOOKPROXY_* environment, config file, instance files, plugins) "
    "without starting, and print what would be served. Exit 0 when hookproxy would start, 2 otherwise. "
    "Takes the same flags as 'hookproxy'."
)


def check_command(argv: Sequence[str]) -> None:
    proxy, _values = _load(argv, "hookproxy check", CHECK_DESCRIPTION)
    settings = proxy.settings
    refusal = public_host_refusal(settings)
    if refusal:
        _fail(refusal)
    auth = "on" if settings.auth_enabled else "off"
    print(f"would listen on http://{settings.host}:{settings.port}/v1 (auth {auth})")
    print(config_source_line(proxy))
    print(f"  default backend: {settings.default_backend or 'none (a model needs a backend: prefix)'}")
    for name, route in settings.failover_routes.items():
        print(f"  failover route {name} ({route.policy}): {' | '.join(route.elements)}")
    print("backends:")
    print("\n".join(_describe_backends(proxy)) or "  none configured")
    print("plugins: " + ", ".join(info.name for info in list_plugins(proxy.pm)))
    unusable = [backend.id for backend in proxy.configured_backends() if not backend.health().usable]
    if unusable:
        print(f"configuration OK; not usable yet: {', '.join(unusable)} (see the reasons above)")
    else:
        print("configuration OK")


def _starter() -> Traversable:
    return resources.files("hookproxy") / "starter"


def init_command(argv: Sequence[str]) -> None:
    parser = _Parser(
        prog="hookproxy init",
        description="Write a commented starter configuration: DIR/config.yaml and one instance file per "
                    "shipped backend whose plugin is installed, in DIR/backends/backend-instances/.",
    )
    parser.add_argument("directory", nargs="?", default="config", metavar="DIR",
                        help="where to write (default: config)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    args = parser.parse_args(argv)
    target = Path(args.directory)
    connectors = {name for name, plugin in make_plugin_manager().list_name_plugin() if plugin is not None}
    files: list[tuple[Path, Traversable]] = [(target / "config.yaml", _starter() / "config.yaml")]
    instances = _starter() / "backends" / "backend-instances"
    for source in sorted(instances.iterdir(), key=lambda item: item.name):
        if source.name.split(".", 1)[0] in connectors:
            files.append((target / INSTANCES_DIR / source.name, source))
    existing = [str(path) for path, _source in files if path.exists()]
    if existing and not args.force:
        _fail(f"{existing[0]} exists; pass --force to overwrite, or choose another directory")
    for path, source in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        print(f"wrote {path}")
    print(f"start it with: hookproxy --config {target / 'config.yaml'}   (or check it: hookproxy check "
          f"--config {target / 'config.yaml'})")


def demo_command(argv: Sequence[str]) -> None:
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(
            "usage: hookproxy demo [flags of hookproxy]\n\n"
            "Serve the built-in demo backend as the default backend: it answers every request by repeating "
            "the last user message, streamed word by word, without any model or key. Flags such as --port "
            "pass through to 'hookproxy'.\n"
        )
        return
    serve(["--config", str(demo_config_path()), *argv])

