"""How the arena draws its pairs, and the providers' view of the run log."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from zimage_ui.arena import Contender, contenders, draw_pair
from zimage_ui.errors import InvalidParams, RateLimited, failure_kind
from zimage_ui.history import HistoryStore
from zimage_ui.keyguard import key_env_names
from zimage_ui.params import GenerationParams
from zimage_ui.provider_stats import PUBLISHED_PRICES, RunRecord, provider_stats, stats_rows, success_by_hour
from zimage_ui.providers.base import KeyRing

SIDES = [Contender("runpod"), Contender("evolink"), Contender("scenario")]


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in key_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "none")


def test_the_pair_with_the_fewest_votes_is_drawn_in_either_order():
    votes = Counter({frozenset(("runpod", "evolink")): 5, frozenset(("runpod", "scenario")): 5})
    rng = random.Random(1)
    drawn = [draw_pair(SIDES, votes, rng) for _ in range(200)]
    assert {frozenset((a.name, b.name)) for a, b in drawn} == {frozenset(("evolink", "scenario"))}
    lefts = Counter(a.name for a, _ in drawn)
    assert 70 < lefts["evolink"] < 130  # left and right at random
    even = Counter(
        frozenset((a.name, b.name)) for a, b in (draw_pair(SIDES, Counter(), rng) for _ in range(300))
    )
    assert len(even) == 3 and min(even.values()) > 60  # with no votes, every pair comes up


def test_fewer_than_two_sides_is_said_not_crashed():
    with pytest.raises(InvalidParams, match="fewer than two sides"):
        draw_pair([Contender("runpod")], Counter())


def test_one_usable_provider_battles_itself_at_two_settings():
    sides = contenders(KeyRing())  # no keys: only the tiny model runs
    assert [side.name for side in sides] == ["diffusers-tiny:steps=4", "diffusers-tiny:steps=8"]
    shared = GenerationParams(prompt="a fox", seed=3, num_inference_steps=8)
    assert sides[0].params(shared).num_inference_steps == 4 and sides[0].params(shared).seed == 3


def test_configured_sides_are_read_and_the_unusable_left_out():
    sides = contenders(KeyRing(), "diffusers-tiny:steps=2, runpod, diffusers-tiny : steps = 6")
    assert [side.name for side in sides] == ["diffusers-tiny:steps=2", "diffusers-tiny:steps=6"]
    with pytest.raises(InvalidParams, match="not provider"):
        contenders(KeyRing(), "nonsense:steps=x")


def test_the_view_counts_runs_failures_latency_and_cost():
    def run(provider: str, ok: bool, seconds: float, failure: str | None = None, cost: float | None = None):
        return RunRecord(provider, "2026-12-02T10:15:00+00:00", ok, False, failure, seconds, 1, cost)

    records = [
        *(run("runpod", True, s) for s in (1.0, 2.0, 3.0, 4.0)),
        run("runpod", False, 30.0, "timed out"),
        run("runpod", False, 0.2, "rate limited"),
        run("evolink", True, 5.0, cost=0.01),
        run("evolink", True, 7.0, cost=0.03),
        RunRecord("evolink", "2026-12-02T11:00:00+00:00", False, True, None, 1.0, 0, None),  # stopped
    ]
    rows = {row.provider: row for row in provider_stats(records)}
    runpod, evolink = rows["runpod"], rows["evolink"]
    assert (runpod.runs, runpod.succeeded, runpod.median_s) == (6, 4, 2.5)
    assert runpod.failures == Counter({"timed out": 1, "rate limited": 1})
    assert runpod.p95_s == pytest.approx(3.85)  # failed runs' times are not latencies
    assert evolink.runs == 2 and evolink.cost_per_image.startswith("$0.0200 (as its runs reported)")
    assert (
        "published" in runpod.cost_per_image and PUBLISHED_PRICES["runpod"].read_on in runpod.cost_per_image
    )
    table = stats_rows(provider_stats(records))
    assert table[0][0] == "runpod" and table[0][2] == "4 (67%)" and "timed out: 1" in table[0][5]
    hours = success_by_hour(records)
    assert {"provider": "runpod", "hour": "2026-12-02T10:00", "success": 4 / 6, "runs": 6} in hours


def test_records_a_browser_sends_back_are_checked():
    good = {"provider": "runpod", "tstamp": "t", "ok": True, "elapsed_s": 1.5, "images": 1}
    assert RunRecord.from_dict(good) is not None
    for bad in ({**good, "elapsed_s": "slow"}, {**good, "elapsed_s": float("nan")}, {"provider": "x"}, [1]):
        assert RunRecord.from_dict(bad) is None, bad


def test_the_team_log_keeps_each_failures_kind_and_an_old_log_gains_the_column(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # a version 1 log, from before failures had kinds
        db.executescript(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
            "provider TEXT NOT NULL, prompt TEXT NOT NULL, params TEXT NOT NULL, seed INTEGER, "
            "elapsed_s REAL NOT NULL, queue_s REAL, run_s REAL, cost TEXT, image_paths TEXT NOT NULL, "
            "error TEXT); PRAGMA user_version = 1;"
        )
        db.execute(
            "INSERT INTO runs (created_at, provider, prompt, params, elapsed_s, image_paths, error) "
            "VALUES ('2026-01-01T00:00:00+00:00', 'runpod', 'a fox', '{}', 2.0, '[]', 'runpod: HTTP 500')"
        )
    store = HistoryStore(path)
    params = GenerationParams(prompt="a fox", seed=1)
    store.record(
        provider="evolink", params=params, seed=1, elapsed_s=1.0, error="evolink: 429", failure="rate limited"
    )
    store.record(
        provider="evolink", params=params, seed=1, elapsed_s=2.0, image_paths=["a.png"], cost="$0.0100"
    )
    records = {(r.provider, r.ok): r for r in store.run_records()}
    assert records[("runpod", False)].failure == "unexpected error"  # an old row: kind unknown
    assert records[("evolink", False)].failure == "rate limited"
    assert records[("evolink", True)].cost_usd == 0.01 and records[("evolink", True)].images == 1


def test_each_error_has_a_kind_in_plain_words():
    assert failure_kind(RateLimited("runpod", "429")) == "rate limited"
    assert failure_kind(ValueError("bug")) == "unexpected error"
