"""The qwen-oauth backend: an OpenAI-compatible HTTP backend whose key is the CLI's OAuth token.

The core builds and sends the request; this class supplies the base URL, the
health shown in /health and ``hookproxy plugins``, and :meth:`prepare`, which the
``prepare_request`` hook awaits: backoff, token, URL and the official client's headers.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
from collections.abc import Awaitable, Callable, Sequence

from hookproxy import (
    BackendInstance,
    ChatCall,
    Health,
    HTTPBackend,
    PermissionDenied,
    Proxy,
    ProxyError,
    UpstreamRequest,
)

from .credentials import default_path
from .oauth import TokenManager
from .payload import add_think_switch, clean_payload
from .ratelimit import BACKOFF_TABLE, Backoff
from .settings import DEFAULT_API_BASE, GATE_FLAG, GATE_KEY, QwenOAuthExtra, QwenOAuthSettings

log = logging.getLogger("hookproxy.qwen_oauth")

#: The Qwen Code version whose User-Agent format we send by default (configurable: extra.user_agent).
QWEN_CODE_VERSION = "0.10.3"
STATE_KEY = "qwen-oauth"


def official_user_agent() -> str:
    """``QwenCode/<ver> (<platform>; <arch>)`` in Node's spelling, as the official client sends it."""
    plat = {"win32": "win32", "darwin": "darwin"}.get(sys.platform, "linux")
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine or "x64")
    return f"QwenCode/{QWEN_CODE_VERSION} ({plat}; {arch})"


def base_from_resource_url(resource_url: str) -> str:
    """The credentials' ``resource_url`` as a base URL.

    Add ``https://`` unless a scheme is there, strip ``/``, append ``/v1`` unless present.
    """
    url = resource_url.strip()
    if not url.startswith(("http://", "https://")):
        url = "https://" + url
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class QwenOAuthBackend(HTTPBackend):
    """One qwen-oauth instance: its settings, its token manager and its rate-limit backoff."""

    #: ``qwen auth`` leaves credentials in a known place, so no instance file is needed.
    serves_unconfigured = True

    def __init__(self, instance: BackendInstance, extra: QwenOAuthExtra, proxy: Proxy) -> None:
        super().__init__(instance)
        self.extra = extra
        self.proxy = proxy
        self.credentials_path = default_path(extra.credentials_path)
        self.tokens = TokenManager(
            self.credentials_path, extra.token_url, lambda: proxy.http, timeout=extra.refresh_timeout_seconds,
            state=proxy.state,
        )
        self.backoff = Backoff(proxy.state.table(BACKOFF_TABLE), instance.id)
        #: How the connector-wide backoff waits; tests replace it to observe waits without sleeping.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.user_agent = extra.user_agent or official_user_agent()
        if instance.api_url:
            log.warning("%s: api_url is ignored for qwen-oauth; set extra.api_base to override the base URL",
                        instance.where())

    # --- the gate ---------------------------------------------------------------------------

    def gate_open(self) -> bool:
        """Open by the CLI flag (or env/YAML setting) or the instance's own ``extra`` key."""
        return self.extra.enable_qwen_oauth_backend_debugging_override or (
            self.proxy.settings_for(QwenOAuthSettings).enable_qwen_oauth_backend_debugging_override
        )

    def gate_message(self) -> str:
        where = f" in {self.instance.source}" if self.instance.source else ""
        return (
            f"Forbidden: the qwen-oauth backend {self.id!r} is reserved for internal development and debugging. "
            f"Start hookproxy with {GATE_FLAG} (or set extra.{GATE_KEY}: true{where}) to enable it; "
            "doing so means you accept the disclaimer in the hookproxy-qwen-oauth README"
        )

    def check_gate(self) -> None:
        if not self.gate_open():
            log.warning("refused a request to %s: the debugging-override gate is closed (%s)", self.id, GATE_FLAG)
            raise PermissionDenied(self.gate_message())

    # --- what the core asks -------------------------------------------------------------------

    def base_url(self) -> str:
        if self.extra.api_base:
            return self.extra.api_base.rstrip("/")
        cached = self.tokens.cached
        if cached is not None and cached.resource_url:
            return base_from_resource_url(cached.resource_url)
        return DEFAULT_API_BASE

    def api_key(self) -> str | None:
        return None  # prepare() sets Authorization after loading or refreshing the token

    def models(self) -> Sequence[str]:
        return self.instance.models or tuple(self.extra.models)

    def health(self) -> Health:
        if not self.gate_open():
            # The credentials file is not even looked at: a closed gate must not warn about it.
            details = {"credentials_path": str(self.credentials_path), "gate_open": False}
            return Health(False, f"gate closed: start with {GATE_FLAG} or set extra.{GATE_KEY}: true", details)
        state = self.tokens.state()
        details = {"expires_in_seconds": state.expires_in_seconds, "credentials_path": str(self.credentials_path),
                   "gate_open": True}
        return Health(state.usable, state.reason, details)

    def refusal(self) -> ProxyError | None:
        """Nothing here: ``prepare_request`` refuses before any I/O with the precise status
        (403 for the closed gate, 401 asking to run ``qwen auth``)."""
        return None

    # --- per request --------------------------------------------------------------------------

    async def prepare(self, call: ChatCall, request: UpstreamRequest) -> None:
        """Backoff, token (refreshed when needed), URL, headers, the cleaned body and ``include_usage``."""
        state = call.state.setdefault(STATE_KEY, {})
        if not state.get("rate_limit_retried"):
            remaining = self.backoff.remaining()
            if remaining > 0:
                log.debug("Qwen OAuth connector-wide rate-limit backoff active: remaining=%.2fs", remaining)
                await self.sleep(remaining)
        rejected = state.pop("rejected_token", None)
        credentials = await self.tokens.token(reload=call.attempt > 1, rejected=rejected)
        state["token"] = credentials.access_token
        request.url = self.base_url() + "/chat/completions"
        request.headers.update(
            {
                "authorization": f"Bearer {credentials.access_token}",
                "user-agent": self.user_agent,
                "x-dashscope-cachecontrol": self.extra.dashscope_cache_control,
                "x-dashscope-useragent": self.user_agent,
                "x-dashscope-authtype": self.extra.dashscope_auth_type,
            }
        )
        request.headers.update({key.lower(): value for key, value in self.extra.headers.items()})
        payload = clean_payload(request.json)
        if self.extra.enable_qwen_think_soft_switch:
            add_think_switch(payload)
        if call.stream:
            options = payload.get("stream_options")
            payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        request.json = payload
