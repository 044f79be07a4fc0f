"""The in-memory response store keeps at most N responses, each for at most its age limit."""

from __future__ import annotations

import asyncio

from hookproxy_responses import MemoryStore


def test_the_oldest_response_is_forgotten_first_and_old_ones_expire():
    now = [0.0]
    store = MemoryStore(max_entries=2, max_age=60, clock=lambda: now[0])

    async def run() -> None:
        await store.save("resp_a", [{"type": "message", "role": "user", "content": "a"}])
        await store.save("resp_b", [])
        await store.save("resp_c", [])
        assert await store.load("resp_a") is None  # over max_entries
        assert await store.load("resp_b") == [] and len(store) == 2
        now[0] = 61
        assert await store.load("resp_c") is None  # older than max_age
        await store.save("resp_d", [])
        assert len(store) == 1  # saving also sweeps expired entries

    asyncio.run(run())


def test_a_response_object_is_kept_beside_its_items_and_deleted_with_them():
    store = MemoryStore(max_entries=2, max_age=60)

    async def run() -> None:
        await store.save("resp_a", [], {"id": "resp_a", "object": "response"})
        await store.save("resp_b", [])
        assert await store.load_response("resp_a") == {"id": "resp_a", "object": "response"}
        assert await store.load_response("resp_b") is None  # kept without its object
        assert await store.delete("resp_a") is True
        assert await store.load("resp_a") is None and await store.load_response("resp_a") is None
        assert await store.delete("resp_a") is False

    asyncio.run(run())
