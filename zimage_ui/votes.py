"""Votes between two images made from one prompt, seed and size: one `VoteRecord` each.

A vote is kept in the team database on a team instance (`ZIMAGE_HISTORY_DB`: a `votes` table
beside the run log, so every browser lands in one leaderboard), else in the voter's own browser
(a public Space: each browser sees its own). Only battles the app drew (`drawn`) count for the
leaderboard: a blind comparison's two sides were chosen by the voter. Votes go out and come back
as CSV in LMArena's battle format: `model_a`, `model_b`, `winner` (`model_a`, `model_b`, `tie` or
`tie (bothbad)`), the other fields after them.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zimage_ui import env
from zimage_ui.rating import WINNERS, Battle

VERDICT_LABELS: dict[str, str] = {
    "model_a": "A is better",
    "model_b": "B is better",
    "tie": "Tie",
    "tie (bothbad)": "Both bad",
}
VERDICT_IDS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "both-bad"}  # button ids
MAX_IMPORT_ROWS = 50_000
MAX_NAME = 80  # a side's name: a provider id with its settings


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VoteRecord:
    """One vote: the two sides as shown (A on the left), the verdict and the battle's facts."""

    model_a: str
    model_b: str
    winner: str  # one of rating.WINNERS
    prompt_hash: str = ""  # never the prompt itself
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    latency_a: float | None = None
    latency_b: float | None = None
    judge: str = ""  # a hashed voter id
    drawn: bool = True  # the app drew the pair (only these are counted)
    tstamp: str = field(default_factory=_now)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def battle(self) -> Battle:
        return Battle(self.model_a, self.model_b, self.winner)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> VoteRecord | None:
        """A vote read from a browser, a file or a row: None unless every field is what it must be."""
        if not isinstance(data, dict):
            return None
        try:
            record = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except TypeError:
            return None
        return record if _valid(record) else None


def _valid(record: VoteRecord) -> bool:
    names_ok = all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in (record.model_a, record.model_b))
    numbers = (record.seed, record.width, record.height, record.latency_a, record.latency_b)
    numbers_ok = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers)
    texts_ok = all(
        isinstance(t, str) and len(t) <= 100
        for t in (record.prompt_hash, record.judge, record.tstamp, record.id)
    )
    return (
        names_ok
        and record.model_a != record.model_b
        and record.winner in WINNERS
        and numbers_ok
        and texts_ok
        and isinstance(record.drawn, bool)
    )


def prompt_hash(prompt: str) -> str:
    """Which prompt a battle used, without the prompt: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def voter_id(session: str | None, secret: str) -> str:
    """A voter's id that names no one: a keyed hash of the browser session."""
    return hmac.new(secret.encode(), (session or "anonymous").encode(), hashlib.sha256).hexdigest()[:16]


def counted(votes: Iterable[VoteRecord]) -> list[Battle]:
    """The battles the leaderboard counts: those the app drew."""
    return [vote.battle() for vote in votes if vote.drawn]


def pair_counts(votes: Iterable[VoteRecord]) -> Counter[frozenset[str]]:
    """How many counted votes each pair of sides has."""
    return Counter(frozenset((v.model_a, v.model_b)) for v in votes if v.drawn)


# ---- CSV in LMArena's battle format ------------------------------------------------------------

CSV_COLUMNS = (
    "model_a", "model_b", "winner", "tstamp", "prompt_hash", "seed", "width", "height",
    "latency_a", "latency_b", "judge", "drawn", "id",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(votes: Iterable[VoteRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for vote in votes:
        row = vote.as_dict()
        writer.writerow([_cell(row[name]) for name in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: object) -> object:
    """Text a spreadsheet would run as a formula gets a leading quote; true/false spelled out."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def from_csv(text: str) -> tuple[list[VoteRecord], list[str]]:
    """The votes in a CSV with at least `model_a`, `model_b` and `winner`, and what was skipped
    (by line). A file from LMArena itself has no `drawn` column: its battles count."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"model_a", "model_b", "winner"} - set(reader.fieldnames or ())
    if missing:
        return [], [f"the file has no {', '.join(sorted(missing))} column: it is not a battle CSV"]
    votes, problems = [], []
    for line, row in enumerate(reader, start=2):
        if line - 1 > MAX_IMPORT_ROWS:
            problems.append(f"only the first {MAX_IMPORT_ROWS} votes were read")
            break
        vote = VoteRecord.from_dict(_typed(row))
        if vote is None:
            problems.append(f"line {line}: not a vote (winner must be one of {', '.join(WINNERS)})")
        else:
            votes.append(vote)
    return votes, problems


def _typed(row: dict[str, str | None]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in CSV_COLUMNS:
        text = (row.get(name) or "").strip()
        if text.startswith("'") and text[1:].startswith(_FORMULA_START):
            text = text[1:]
        if name in ("seed", "width", "height"):
            values[name] = int(text) if text.lstrip("-").isdigit() else None
        elif name in ("latency_a", "latency_b"):
            values[name] = _float(text)
        elif name == "drawn":
            values[name] = text.lower() not in ("false", "0", "no")
        elif text or name in ("model_a", "model_b", "winner"):
            values[name] = text
    return values


def _float(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


# ---- the team's votes ----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id TEXT PRIMARY KEY,
    tstamp TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    winner TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    seed INTEGER,
    width INTEGER,
    height INTEGER,
    latency_a REAL,
    latency_b REAL,
    judge TEXT NOT NULL,
    drawn INTEGER NOT NULL
);
"""
_NAMES = [f.name for f in fields(VoteRecord)]


class VoteStore:
    """The team's votes, in the run log's SQLite file (WAL; a connection per call)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def add(self, votes: Iterable[VoteRecord]) -> int:
        """Keep these votes (one already kept, by id, is not counted twice); how many were new."""
        rows = [tuple(vote.as_dict()[name] for name in _NAMES) for vote in votes]
        with self._lock, self._connect() as db:
            before = db.total_changes
            db.executemany(
                f"INSERT OR IGNORE INTO votes ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})",
                rows,
            )
            return db.total_changes - before

    def all(self) -> list[VoteRecord]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(_NAMES)} FROM votes ORDER BY tstamp, id").fetchall()
        votes = []
        for row in rows:
            values = dict(zip(_NAMES, row, strict=True))
            values["drawn"] = bool(values["drawn"])
            vote = VoteRecord.from_dict(values)
            if vote is not None:
                votes.append(vote)
        return votes


def votes_from_env() -> VoteStore | None:
    """The team's votes on a team instance (beside `ZIMAGE_HISTORY_DB`), else None: votes stay in
    each browser."""
    path = env.raw("ZIMAGE_HISTORY_DB")
    return VoteStore(path) if path else None
