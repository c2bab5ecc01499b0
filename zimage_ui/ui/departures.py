"""Runs end when their client goes away: a closed tab or a killed API client stops paying for work.

Gradio stops streaming to a client whose connection closed (it marks that session's jobs not
alive) but lets the function run on; a run would then hold its slot, and a paid job at the
provider, until its deadline. A watcher on the server's event loop looks once a second for
sessions that have runs here and no live job in Gradio's queue, and stops their runs the way
Stop does (the provider is told to cancel where its API can).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from zimage_ui.runs import RUNS

log = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0

# One per event loop and Blocks (the page's, the API's), by id, started with its first run.
_watchers: dict[tuple[int, int], asyncio.Task[None]] = {}


def gone_sessions(active_jobs: Iterable[Any], with_runs: set[str]) -> set[str]:
    """Sessions with runs here whose every job in the queue is no longer alive (client gone)."""
    alive: set[str] = set()
    seen: set[str] = set()
    for jobs in active_jobs:
        for job in jobs or ():
            session = getattr(job, "session_hash", None)
            if session in with_runs:
                seen.add(session)
                if getattr(job, "alive", True):
                    alive.add(session)
    return seen - alive


async def _watch(blocks: Any) -> None:
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        queue = getattr(blocks, "_queue", None)
        if queue is None:
            continue
        for session in gone_sessions(list(queue.active_jobs), RUNS.sessions()):
            stopped = RUNS.stop_session(session)
            log.info("a client went away: stopped its %d run(s)", stopped)


def watch_departures(blocks: Any) -> None:
    """Start the watcher of `blocks`' queue on the running loop, once (a no-op outside an event
    loop, or outside a Gradio event: an MCP call has no queue to watch)."""
    if blocks is None:
        return
    with contextlib.suppress(RuntimeError):
        loop = asyncio.get_running_loop()
        key = (id(loop), id(blocks))
        task = _watchers.get(key)
        if task is None or task.done():
            _watchers[key] = loop.create_task(_watch(blocks))
