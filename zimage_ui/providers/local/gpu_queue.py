"""One device, first come, first served: local generations wait in line without polling.

Waiters are woken in arrival order by the release of the one before them, on their own
event loop (the page's, or a CLI run's), and are told their place in line whenever it
changes. Stop (or a cancelled task) leaves the line at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from zimage_ui.cancel import CancelToken

PlaceFn = Callable[[int], None]  # told 1 for "next in line", 2 for "one ahead", ...


@dataclass(eq=False)
class _Ticket:
    loop: asyncio.AbstractEventLoop
    on_place: PlaceFn
    woken: asyncio.Future[None] = field(init=False)
    granted: bool = False

    def __post_init__(self) -> None:
        self.woken = self.loop.create_future()


def ordinal(number: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


class GpuQueue:
    """A fair lock for async callers on any event loop; `release` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._line: deque[_Ticket] = deque()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._line)

    async def acquire(self, cancel: CancelToken, on_place: PlaceFn) -> bool:
        """Take the device, waiting in line; False when Stop came first (the device is not held)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._busy:
                self._busy = True
                return True
            ticket = _Ticket(loop, on_place)
            self._line.append(ticket)
            place = len(self._line)
        on_place(place)
        stop = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({ticket.woken, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the task itself was cancelled: leave the line, pass the device on
            self._leave(ticket)
            raise
        finally:
            stop.cancel()
        if ticket.woken.done():
            return True
        self._leave(ticket)
        return False

    def _leave(self, ticket: _Ticket) -> None:
        """Step out of the line; a device handed over meanwhile goes on to the next in line."""
        with self._lock:
            if not ticket.granted:
                self._line.remove(ticket)
                self._tell_places()
                return
        self.release()

    def release(self) -> None:
        """Hand the device to the next in line, or mark it free."""
        with self._lock:
            while self._line:
                ticket = self._line.popleft()
                try:
                    ticket.loop.call_soon_threadsafe(_wake, ticket.woken)
                except RuntimeError:  # its event loop is gone: skip it
                    continue
                ticket.granted = True
                self._tell_places()
                return
            self._busy = False

    def _tell_places(self) -> None:
        for place, ticket in enumerate(self._line, start=1):
            try:
                ticket.loop.call_soon_threadsafe(ticket.on_place, place)
            except RuntimeError:
                continue


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
