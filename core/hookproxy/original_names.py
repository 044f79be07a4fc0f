"""The original proxy's environment variable names, accepted below the ``HOOKPROXY_*`` names.

Why: people moving from the original proxy already export ``LLM_BACKEND``, ``STATIC_ROUTE``,
``HYBRID_*`` and friends in their shells and service files. Ignoring them silently would run a
differently configured proxy (or one without the keys they meant to require), so each is read
as an alias of the ``HOOKPROXY_*`` variable it corresponds to. The ``HOOKPROXY_*`` name always
wins; every alias in use is named in one INFO line at start (see :func:`describe`).

Plugins declare aliases of their own settings with ``json_schema_extra={"env_aliases": [...]}``
on a field, the same way they declare ``cli_aliases``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from .errors import ConfigError

PREFIX = "HOOKPROXY_"

#: original name -> the hookproxy variable it stands for (core settings).
CORE_ALIASES: dict[str, str] = {
    "LLM_BACKEND": "HOOKPROXY_DEFAULT_BACKEND",
    "STATIC_ROUTE": "HOOKPROXY_FORCE_MODEL",
    "APP_HOST": "HOOKPROXY_HOST",
    "APP_PORT": "HOOKPROXY_PORT",
    "PROXY_TIMEOUT": "HOOKPROXY_TIMEOUT",
    "CONFIG_FILE": "HOOKPROXY_CONFIG",
    "LOG_LEVEL": "HOOKPROXY_LOG_LEVEL",
    "LOG_FILE": "HOOKPROXY_LOG_FILE",
    "API_KEYS": "HOOKPROXY_API_KEYS",
    "DISABLE_AUTH": "HOOKPROXY_DISABLE_AUTH",
    **{
        f"FAILURE_HANDLING_{name}": f"{PREFIX}{name}"
        for name in ("MAX_SILENT_WAIT", "TOTAL_TIMEOUT_BUDGET", "KEEPALIVE_INTERVAL", "MAX_FAILOVER_HOPS",
                     "MIN_RETRY_WAIT")
    },
}
#: The original's documented proxy key: one more key, added to ``API_KEYS``.
EXTRA_KEY_VARIABLE = "LLM_INTERACTIVE_PROXY_API_KEY"


@dataclass
class AliasedEnv:
    """The environment with aliases folded in, and what was used or shadowed (for the log)."""

    env: dict[str, str]
    used: list[tuple[str, str]] = field(default_factory=list)
    shadowed: list[tuple[str, str]] = field(default_factory=list)


def plugin_aliases(models: Iterable[type[BaseModel]]) -> dict[str, str]:
    """``env_aliases`` declared on plugin settings fields, as original name -> HOOKPROXY_ name."""
    aliases: dict[str, str] = {}
    for model in models:
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            for alias in extra.get("env_aliases", []) or []:  # type: ignore[union-attr]
                aliases[str(alias)] = PREFIX + name.upper()
    return aliases


def fold_aliases(env: Mapping[str, str], aliases: Mapping[str, str]) -> AliasedEnv:
    """Copy each set alias onto its ``HOOKPROXY_*`` name unless that name is set itself."""
    result = AliasedEnv(dict(env))
    for original, target in {**CORE_ALIASES, **aliases}.items():
        value = env.get(original)
        if value is None:
            continue
        if target in env:
            result.shadowed.append((original, target))
            continue
        if original == "STATIC_ROUTE":
            check_static_route(value, "STATIC_ROUTE")
        result.env[target] = value
        result.used.append((original, target))
    extra_key = env.get(EXTRA_KEY_VARIABLE)
    keys_target = PREFIX + "API_KEYS"
    if extra_key and keys_target not in env:
        listed = result.env.get(keys_target, "")
        result.env[keys_target] = f"{listed},{extra_key}" if listed else extra_key
        result.used.append((EXTRA_KEY_VARIABLE, keys_target))
    elif extra_key:
        result.shadowed.append((EXTRA_KEY_VARIABLE, keys_target))
    return result


def check_static_route(value: str, where: str) -> str:
    """The original's strict ``BACKEND:MODEL`` form of a static route."""
    backend, colon, model = value.partition(":")
    if not colon or not backend.strip() or not model.strip():
        raise ConfigError(f"{where} must be BACKEND:MODEL (e.g. minimax:MiniMax-M2), got {value!r}")
    return value


def describe(aliased: AliasedEnv) -> str | None:
    """The one start-up line naming every alias in use (and any a HOOKPROXY_ name overrode)."""
    if not aliased.used and not aliased.shadowed:
        return None
    parts = [f"{original} as {target}" for original, target in aliased.used]
    line = "using the original proxy's environment variables: " + (", ".join(parts) or "none")
    if aliased.shadowed:
        ignored = ", ".join(f"{original} (because {target} is set)" for original, target in aliased.shadowed)
        line += f"; ignored: {ignored}"
    return line
