"""A stop reaches every task: a task that is cancelled ends, whatever it was waiting
for. On Python 3.11, `asyncio.wait_for` loses a cancellation that arrives just as
the awaitable it waits on completes (it returns that result instead), and the task
goes on as if nothing had been asked of it; a loop such as the job recovery sweep
then runs forever, and the proxy's stop waits on it. A fresh-clone CI run saw
exactly that: three proxies stopped right after their start, while their catalogs
were opening, never exited. The proxy therefore bounds its waits with
`asyncio.timeout`, which keeps the cancellation."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from proxy.catalog.store import CatalogStore

PROXY = Path(__file__).resolve().parents[2] / "proxy"


def test_the_proxy_bounds_its_waits_with_asyncio_timeout_not_wait_for():
    found = []
    for path in sorted(PROXY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "wait_for" and \
                    isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                found.append(f"{path.relative_to(PROXY.parent)}:{node.lineno}")
    assert not found, found


def test_a_stop_as_the_catalog_listener_comes_up_ends_the_opening(upstream):
    """`CatalogStore.pool` waits for the database's LISTEN connection before it
    returns; a cancellation that comes in the loop iterations around that moment
    (the sweep's, at a proxy's stop) ends the call instead of being lost."""
    async def attempt(steps_after_ready: int) -> str:
        store = CatalogStore(upstream)
        opening = asyncio.ensure_future(store.pool("postgres", migrate_catalog=False))
        try:
            async with asyncio.timeout(10):
                while not (ready := store._listen_ready.get("postgres")) or not ready.is_set():
                    await asyncio.sleep(0)
            for _ in range(steps_after_ready):
                await asyncio.sleep(0)
            if opening.done():
                return "returned before the stop"
            opening.cancel()
            try:
                await opening
            except asyncio.CancelledError:
                return "cancelled"
            return "went on after the stop"
        finally:
            await store.close()

    async def run() -> list[str]:
        return [await attempt(steps) for steps in range(8)]

    outcomes = asyncio.run(run())
    assert "went on after the stop" not in outcomes, outcomes
    assert "cancelled" in outcomes, outcomes
