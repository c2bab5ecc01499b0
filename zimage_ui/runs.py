"""Runs on a shared instance: each Generate, Compare or Sweep owns an id, a Stop and its files.

- A run's files go to its own folder (`work_root()/<run id>/`), named so that no two sides,
  cells or images share a name. The work root is inside Gradio's upload and cache folder, so
  Gradio serves a run's files where they are (no hash, no second copy): a file is reachable only
  by its full path, which holds the process's random tag and the run's random id, and only the
  run's own session is told it. Old run folders are pruned on a schedule.
- Stop reaches the runs of one kind ("generate", "compare", "sweep") in one browser session,
  and nothing else.
- Bounded work: at most `ZIMAGE_MAX_ACTIVE_RUNS` runs at once on the server (a clear "busy"
  otherwise), and at most `ZIMAGE_SESSION_HOSTED_LIMIT` hosted requests in flight per session.
- `ZIMAGE_OUTPUT_DIR`, when set, keeps a team copy of every image in per-run folders.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import ServerBusy
from zimage_ui.files import write_atomic
from zimage_ui.visitor_files import upload_folder

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0


def cache_ttl_s() -> float:
    """How long generated files are kept (Gradio's cache and the run folders)."""
    return float(env.get("ZIMAGE_CACHE_TTL_S"))


def cache_schedule() -> tuple[int, int]:
    """Gradio's `delete_cache` for every Blocks served: how often to look (a quarter of the TTL,
    1 to 15 minutes) and how old a file it handed out may get (the TTL), in seconds."""
    ttl = int(cache_ttl_s())
    return max(60, min(ttl // 4, 900)), ttl


def max_active_runs() -> int:
    return int(env.get("ZIMAGE_MAX_ACTIVE_RUNS"))


def session_hosted_limit() -> int:
    return int(env.get("ZIMAGE_SESSION_HOSTED_LIMIT"))


def team_output_dir() -> Path | None:
    configured = env.raw("ZIMAGE_OUTPUT_DIR")
    return Path(configured) if configured else None


_root_lock = threading.Lock()
_root: Path | None = None
_last_prune = 0.0


PROCESS_PREFIX = "process-"


def work_root() -> Path:
    """This process's folder for run files: `<upload folder>/zimage-ui-runs-<uid>/process-<pid>-<tag>`
    (the upload folder: Gradio's, `visitor_files.upload_folder`).

    The parent (mode 0700) is shared by this user's processes; each process prunes only its own
    runs, and the folders of processes that have ended once they are older than the cache TTL, so
    two apps on one machine never delete each other's young files (however their TTLs differ).
    A folder of that name that is not ours, or a link, is never used: a fresh private one is.
    """
    global _root
    with _root_lock:
        if _root is None or not _root.is_dir():
            served = upload_folder()
            served.mkdir(parents=True, exist_ok=True)
            parent = _own_folder(served / f"zimage-ui-runs-{os.getuid()}")
            _root = parent / f"{PROCESS_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            _root.mkdir(mode=0o700, exist_ok=True)
        return _root


def _process_alive(folder: Path) -> bool:
    """Whether the process a sibling's run folder belongs to is still running."""
    try:
        pid = int(folder.name.removeprefix(PROCESS_PREFIX).split("-", 1)[0])
        os.kill(pid, 0)
    except ValueError:
        return False
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not ours to judge (it can't be in our folder)
        return True
    return True


def _own_folder(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"{path} is not a private folder of this user")
        return path
    except OSError as exc:
        log.warning("not using %s (%s); using a fresh private folder", path, exc)
        fresh = Path(tempfile.mkdtemp(prefix="zimage-ui-runs-", dir=upload_folder()))
        atexit.register(shutil.rmtree, fresh, True)
        return fresh


def prune(now: float | None = None, *, wait: bool = False) -> None:
    """Remove run folders older than the cache TTL, at most once a minute, in a background thread
    (deleting many files must not hold up the event loop); `wait` runs it here, for tests."""
    global _last_prune
    now = time.time() if now is None else now
    with _root_lock:
        if not wait and now - _last_prune < PRUNE_EVERY_S:
            return
        _last_prune = now
    if wait:
        _remove_older_than(now - cache_ttl_s())
    else:
        threading.Thread(target=_remove_older_than, args=(now - cache_ttl_s(),), daemon=True).start()


def _remove_older_than(cutoff: float) -> None:
    """This process's run folders older than `cutoff`, and ended processes' folders likewise."""
    own = work_root()
    for folder in own.iterdir():
        _remove_if_older(folder, cutoff)
    for sibling in own.parent.iterdir():
        if sibling != own and sibling.name.startswith(PROCESS_PREFIX) and not _process_alive(sibling):
            _remove_if_older(sibling, cutoff)


def _remove_if_older(folder: Path, cutoff: float) -> None:
    try:
        if folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        return


def scratch_folder(kind: str) -> Path:
    """A fresh private folder for one download (an exported preset, a CSV), pruned like runs."""
    prune()
    folder = work_root() / f"{kind}-{uuid.uuid4().hex}"
    folder.mkdir()
    return folder


@dataclass
class Run:
    """One Generate, Compare or Sweep: its id, its Stop and its private folder."""

    kind: str
    session: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    token: CancelToken = field(default_factory=CancelToken)
    started: float = field(default_factory=time.time)
    hosted_gate: asyncio.Semaphore | None = None

    @property
    def folder(self) -> Path:
        return work_root() / self.id

    def write(self, name: str, data: bytes) -> Path:
        """Write one of this run's files; names are unique within the run, the run id across runs."""
        self.folder.mkdir(exist_ok=True)
        path = self.folder / name
        if path.exists():
            raise FileExistsError(f"{name} was already written in run {self.id}")
        write_atomic(path, data)
        team = team_output_dir()
        if team is not None:
            stamp = datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y%m%d-%H%M%S")
            copy = team / f"{stamp}-{self.kind}-{self.id[:12]}" / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(copy, data)
        return path


@dataclass
class _SessionGate:
    gate: asyncio.Semaphore
    runs: int = 0


class RunRegistry:
    """The runs in progress on this server, by browser session and kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._gates: dict[str, _SessionGate] = {}

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._runs)

    @contextmanager
    def start(self, kind: str, session: str | None) -> Iterator[Run]:
        """Register a run for its lifetime; raises ServerBusy when the server is full."""
        session = session or f"anonymous-{uuid.uuid4().hex}"
        prune()
        with self._lock:
            limit = max_active_runs()
            if len(self._runs) >= limit:
                raise ServerBusy(f"the server is busy ({limit} runs in progress): try again in a minute")
            shared = self._gates.setdefault(session, _SessionGate(asyncio.Semaphore(session_hosted_limit())))
            shared.runs += 1
            run = Run(kind=kind, session=session, hosted_gate=shared.gate)
            self._runs[run.id] = run
        try:
            yield run
        finally:
            with self._lock:
                del self._runs[run.id]
                shared.runs -= 1
                if shared.runs == 0:
                    del self._gates[session]

    def sessions(self) -> set[str]:
        """The browser or API sessions that have runs in progress."""
        with self._lock:
            return {run.session for run in self._runs.values()}

    def stop_session(self, session: str) -> int:
        """Stop every run of `session`, of any kind (its client has gone away); how many."""
        with self._lock:
            runs = [run for run in self._runs.values() if run.session == session]
        for run in runs:
            run.token.cancel()
        return len(runs)

    def stop(self, kind: str, session: str | None) -> int:
        """Stop every run of `kind` in `session`; how many were stopped."""
        with self._lock:
            runs = [r for r in self._runs.values() if r.kind == kind and r.session == session]
        for run in runs:
            run.token.cancel()
        return len(runs)


RUNS = RunRegistry()


@asynccontextmanager
async def hosted_slot(
    gate: asyncio.Semaphore | None, on_wait: Callable[[], None] | None = None
) -> AsyncIterator[None]:
    """Hold one of the session's hosted-request slots (no limit outside a run)."""
    if gate is None:
        yield
        return
    if gate.locked() and on_wait is not None:
        on_wait()
    async with gate:
        yield
