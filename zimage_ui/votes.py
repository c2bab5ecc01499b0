"""Blind votes between two sides, appended to a local JSON-lines file, and a leaderboard."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from zimage_ui import env

Verdict = Literal["left", "right", "tie", "both_bad"]
VERDICT_LABELS: dict[str, str] = {
    "left": "Side A is better",
    "right": "Side B is better",
    "tie": "Tie",
    "both_bad": "Both bad",
}
_WRITE_LOCK = threading.Lock()


def votes_path() -> Path:
    configured = env.raw("ZIMAGE_VOTES_PATH")
    if configured:
        return Path(configured)
    from platformdirs import user_data_dir

    return Path(user_data_dir("zimage-ui", appauthor=False)) / "votes.jsonl"


@dataclass(frozen=True)
class Vote:
    left: str
    right: str
    verdict: Verdict
    prompt: str
    seed: int | None


def record_vote(vote: Vote, path: Path | None = None) -> Path:
    path = path or votes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "left": vote.left,
            "right": vote.right,
            "verdict": vote.verdict,
            "prompt": vote.prompt,
            "seed": vote.seed,
        },
        ensure_ascii=False,
    )
    with _WRITE_LOCK, path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
    return path


def read_votes(path: Path | None = None) -> list[dict]:
    """Every readable vote; a damaged line is skipped, not fatal."""
    path = path or votes_path()
    if not path.exists():
        return []
    votes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("verdict") in VERDICT_LABELS:
            votes.append(record)
    return votes


LEADERBOARD_COLUMNS = ["Provider", "Wins", "Ties", "Losses", "Both bad", "Win rate"]


def leaderboard(votes: list[dict]) -> list[list[object]]:
    """Rows of LEADERBOARD_COLUMNS, best win rate first. A tie or "both bad" is no win or loss."""
    tally: dict[str, Counter[str]] = {}
    for vote in votes:
        left, right, verdict = str(vote["left"]), str(vote["right"]), vote["verdict"]
        for side in (left, right):
            tally.setdefault(side, Counter())
        if verdict == "left":
            tally[left]["wins"] += 1
            tally[right]["losses"] += 1
        elif verdict == "right":
            tally[right]["wins"] += 1
            tally[left]["losses"] += 1
        else:
            key = "ties" if verdict == "tie" else "both_bad"
            tally[left][key] += 1
            tally[right][key] += 1

    def win_rate(counts: Counter[str]) -> float:
        games = sum(counts.values())
        return counts["wins"] / games if games else 0.0

    ranked = sorted(tally.items(), key=lambda item: (-win_rate(item[1]), item[0]))
    return [
        [name, c["wins"], c["ties"], c["losses"], c["both_bad"], f"{win_rate(c):.0%}"] for name, c in ranked
    ]
