"""A persistent run log in SQLite, for a team instance that wants to find past prompts.

Enabled by `ZIMAGE_HISTORY_DB` (a file path); without it history stays in the browser
session and this module is not used. Every run, good or failed, is one row. No key is
ever stored: rows are built from parameters and messages, with known key values
scrubbed as a last guard.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from zimage_ui import env
from zimage_ui.keyguard import Secrets, known_secrets, scrub
from zimage_ui.params import GenerationParams
from zimage_ui.provider_stats import RunRecord
from zimage_ui.redaction import url_secrets
from zimage_ui.runner import Outcome

HISTORY_ENV = "ZIMAGE_HISTORY_DB"
SCHEMA_VERSION = 2  # 2: each run's kind of failure (`failure`), for the providers' view
MAX_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    provider TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER,
    elapsed_s REAL NOT NULL,
    queue_s REAL,
    run_s REAL,
    cost TEXT,
    image_paths TEXT NOT NULL,
    error TEXT,
    failure TEXT
);
CREATE INDEX IF NOT EXISTS runs_created_at ON runs (created_at);
"""
_COLUMNS = (
    "id, created_at, provider, prompt, params, seed, elapsed_s, queue_s, run_s, cost, image_paths, error"
)
CSV_HEADER = (
    "id", "created_at", "provider", "prompt", "negative_prompt", "seed", "width", "height", "steps",
    "guidance_scale", "shift", "num_images", "elapsed_s", "queue_s", "run_s", "cost", "images", "error",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class HistoryRow:
    """One recorded run."""

    id: int
    created_at: str  # ISO 8601, UTC
    provider: str
    prompt: str
    params: dict[str, Any]  # GenerationParams as JSON
    seed: int | None  # the seed really used
    elapsed_s: float
    queue_s: float | None
    run_s: float | None
    cost: str | None
    image_paths: list[str]
    error: str | None

    def generation_params(self) -> GenerationParams:
        """The run's parameters with the seed it used, ready to run again."""
        return GenerationParams.model_validate({**self.params, "seed": self.seed})


@dataclass(frozen=True)
class HistoryEntry:
    """One image in a browser's history: its file, its caption, the prompt it was made from (for
    search) and its settings as a preset (JSON). The browser keeps these and sends them back, so
    each is read as untrusted (`from_dict`)."""

    path: str
    caption: str
    prompt: str
    preset: str

    MAX_TEXT: ClassVar[int] = 20_000  # a preset with its inputs fits; anything longer is not ours

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "caption": self.caption, "prompt": self.prompt, "preset": self.preset}

    @classmethod
    def from_dict(cls, data: object) -> HistoryEntry | None:
        """The entry a browser sent, or None when it is not one (wrong shape, a field not text, or
        longer than any entry this app writes)."""
        if not isinstance(data, dict):
            return None
        values = [data.get(name) for name in ("path", "caption", "prompt", "preset")]
        if not all(isinstance(value, str) and len(value) <= cls.MAX_TEXT for value in values):
            return None
        return cls(*values)  # type: ignore[arg-type]


def _utc(moment: datetime | None) -> str:
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _row(values: Sequence[Any]) -> HistoryRow:
    (row_id, created, provider, prompt, params, seed, elapsed, queue, run, cost, paths, error) = values
    return HistoryRow(
        row_id, created, provider, prompt, json.loads(params), seed, elapsed, queue, run, cost,
        json.loads(paths), error,
    )  # fmt: skip


def _cell(value: object) -> object:
    """Text a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class HistoryStore:
    """The run log in one SQLite file in WAL mode; safe to share between threads (a connection per
    call) and between the app's processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        with self._connect() as db:
            # WAL: a write killed halfway leaves the log readable, and readers never wait on it.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "failure" not in columns:  # a log from before version 2
                db.execute("ALTER TABLE runs ADD COLUMN failure TEXT")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def record(
        self,
        *,
        provider: str,
        params: GenerationParams,
        seed: int | None,
        elapsed_s: float,
        queue_s: float | None = None,
        run_s: float | None = None,
        cost: str | None = None,
        image_paths: Iterable[str | Path] = (),
        error: str | None = None,
        failure: str | None = None,
        created_at: datetime | None = None,
        secrets: Iterable[str] = (),
    ) -> int:
        """Store one run and return its id. Known key values are scrubbed from every text."""
        known = known_secrets(secrets)
        refs = [params.image, params.mask, params.control_image, *(lora.ref for lora in params.loras)]
        known += [
            ("a credential in an input URL", value) for ref in refs if ref for value in url_secrets(ref)
        ]
        clean = params.model_copy(
            update={
                "prompt": scrub(params.prompt, known),
                "negative_prompt": scrub(params.negative_prompt, known),
            }
        )
        row = (
            _utc(created_at),
            provider,
            clean.prompt,
            scrub(json.dumps(clean.model_dump(mode="json"), ensure_ascii=False), known),
            seed,
            float(elapsed_s),
            queue_s,
            run_s,
            _scrubbed(cost, known),
            json.dumps([scrub(str(path), known) for path in image_paths], ensure_ascii=False),
            _scrubbed(error, known),
            failure,
        )
        with self._write_lock, self._connect() as db:
            cursor = db.execute(
                f"INSERT INTO runs ({_COLUMNS.partition(', ')[2]}, failure) VALUES ({', '.join('?' * 12)})",
                row,
            )
            return int(cursor.lastrowid or 0)

    def record_outcome(
        self, outcome: Outcome, image_paths: Iterable[str | Path] = (), *, secrets: Iterable[str] = ()
    ) -> int | None:
        """Store a runner Outcome; None when it never got as far as prepared parameters."""
        if outcome.prepared is None:
            return None
        result = outcome.result
        return self.record(
            provider=outcome.provider,
            params=outcome.prepared.params,
            seed=outcome.seed,
            elapsed_s=outcome.elapsed_s,
            queue_s=result.queue_s if result else None,
            run_s=result.run_s if result else None,
            cost=str(result.cost) if result and result.cost else None,
            image_paths=image_paths,
            error=outcome.error,
            failure="stopped" if outcome.stopped else outcome.failure,
            secrets=secrets,
        )

    def forget_image(self, path: str) -> int:
        """Take one image out of the runs that list it (the runs stay, for their figures); how
        many runs listed it."""
        changed = 0
        with self._write_lock, self._connect() as db:
            rows = db.execute("SELECT id, image_paths FROM runs WHERE instr(image_paths, ?) > 0", (path,))
            for row_id, paths in rows.fetchall():
                kept = [p for p in json.loads(paths) if p != path]
                if len(kept) != len(json.loads(paths)):
                    db.execute(
                        "UPDATE runs SET image_paths = ? WHERE id = ?",
                        (json.dumps(kept, ensure_ascii=False), row_id),
                    )
                    changed += 1
        return changed

    def run_records(self, limit: int = 5000) -> list[RunRecord]:
        """The newest runs as the providers' view counts them."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT provider, created_at, error, failure, elapsed_s, image_paths, cost FROM runs "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (max(1, int(limit)),),
            ).fetchall()
        return [
            RunRecord(
                provider=provider,
                tstamp=created,
                ok=error is None,
                stopped=failure == "stopped",
                failure=None if error is None else (failure or "unexpected error"),
                elapsed_s=float(elapsed),
                images=len(json.loads(paths)),
                cost_usd=_usd(cost),
            )
            for provider, created, error, failure, elapsed, paths, cost in rows
        ]

    def search(self, text: str = "", limit: int = 50) -> list[HistoryRow]:
        """Runs whose prompt contains `text` (case-insensitive for ASCII), newest first."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        limit = max(1, min(int(limit), MAX_LIMIT))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE prompt LIKE ? ESCAPE '\\' "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (pattern, limit),
            ).fetchall()
        return [_row(values) for values in rows]

    def export_csv(self) -> str:
        """Every run as CSV (oldest first), one column per setting, spreadsheet-safe text."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY created_at, id").fetchall()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_HEADER)
        for row in map(_row, rows):
            p = row.params
            values = (
                row.id, row.created_at, row.provider, row.prompt, p.get("negative_prompt", ""), row.seed,
                p.get("width"), p.get("height"), p.get("num_inference_steps"), p.get("guidance_scale"),
                p.get("shift"), p.get("num_images"), row.elapsed_s, row.queue_s, row.run_s, row.cost,
                " ".join(row.image_paths), row.error,
            )  # fmt: skip
            writer.writerow([_cell(value) for value in values])
        return buffer.getvalue()


def _usd(cost: str | None) -> float | None:
    """A cost as recorded ("$0.0050"), in dollars; None for other units or none."""
    if not cost or not cost.startswith("$"):
        return None
    try:
        return float(cost[1:])
    except ValueError:
        return None


def _scrubbed(text: str | None, known: Secrets) -> str | None:
    return None if text is None else scrub(text, known)


def history_from_env() -> HistoryStore | None:
    """The store at `ZIMAGE_HISTORY_DB`, or None when history is session-only."""
    path = env.raw("ZIMAGE_HISTORY_DB")
    return HistoryStore(path) if path else None
