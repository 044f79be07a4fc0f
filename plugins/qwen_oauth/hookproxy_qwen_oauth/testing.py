"""A fake of the Qwen service for tests (ours and downstream): token endpoint + chat token check.

Install a :class:`QwenService` as the ``handler`` of a ``hookproxy.testing.FakeUpstream``. It
rotates tokens like the real service: each refresh issues a new access token *and* a new refresh
token and invalidates the old ones, so a second refresh with a spent refresh token fails (400)
and a stale access token gets 401. A double refresh is therefore visible, not just counted.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from hookproxy.testing import Canned, RecordedRequest

from .oauth import CLIENT_ID

TOKEN_PATH = "/api/v1/oauth2/token"
INVALID_TOKEN = {"error": {"message": "invalid access token or token expired", "type": "invalid_request_error",
                           "code": "invalid_api_key"}}


class QwenService:
    """The ``handler`` of a FakeUpstream: answers the token endpoint and checks chat tokens."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.access_tokens = {"at-0"}
        self.refresh_token = "rt-0"
        self.refreshes = 0
        self.token_requests: list[dict[str, str]] = []
        self.token_answer: Canned | None = None  # force an answer (e.g. 400, 500)
        self.token_stall = 0.0
        self.expires_in = 3600
        self.resource_url: str | None = None
        self.discontinued = False  # after 2026-04-15 every OAuth token gets 401

    def __call__(self, request: RecordedRequest) -> Canned | None:
        if request.path == TOKEN_PATH:
            return self._token(request)
        if request.path.endswith("/chat/completions"):
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            with self.lock:
                if self.discontinued or token not in self.access_tokens:
                    return Canned(status=401, json=INVALID_TOKEN)
        return None

    def _token(self, request: RecordedRequest) -> Canned:
        form = dict(parse_qsl(request.body.decode()))
        with self.lock:
            self.token_requests.append(form)
            if self.token_answer is not None:
                return self.token_answer
            if (form.get("grant_type") != "refresh_token" or form.get("client_id") != CLIENT_ID
                    or form.get("refresh_token") != self.refresh_token):
                return Canned(status=400, json={"error": "invalid_request",
                                                "error_description": "Invalid refresh token or client_id"})
            self.refreshes += 1
            number = self.refreshes
            self.refresh_token = f"rt-{number}"
            self.access_tokens = {f"at-{number}"}
            body: dict[str, Any] = {"access_token": f"at-{number}", "refresh_token": f"rt-{number}",
                                    "token_type": "Bearer", "expires_in": self.expires_in}
            if self.resource_url:
                body["resource_url"] = self.resource_url
        return Canned(json=body, stall=self.token_stall)


def write_creds(path: Path, *, access: str = "at-0", refresh: str = "rt-0", expires_in: float = 3600,
                **fields: Any) -> dict[str, Any]:
    """Write a credentials file like `qwen auth` does; ``expires_in`` seconds from now."""
    data = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "expiry_date": int((time.time() + expires_in) * 1000), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


