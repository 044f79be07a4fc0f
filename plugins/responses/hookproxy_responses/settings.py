"""The plugin's settings: the optional response store and reasoning replay.

Each field is also a CLI flag (``--responses-store``), an environment variable
(``HOOKPROXY_RESPONSES_STORE``) and a YAML key (``backends.responses_store``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ResponsesSettings(BaseModel):
    responses_store: bool = Field(
        False, description="keep finished responses in memory so 'previous_response_id' works (off: stateless)")
    responses_store_max_entries: int = Field(
        1000, ge=1, description="responses the store keeps; the oldest is forgotten first")
    responses_store_max_age: float = Field(
        3600.0, gt=0, description="seconds a stored response can be continued with 'previous_response_id'")
    responses_replay_reasoning: bool = Field(
        True, description="send the summary text of echoed reasoning items back to the backend as "
                          "'reasoning_content' on the assistant turn it preceded")
