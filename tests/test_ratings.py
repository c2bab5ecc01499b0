"""Ratings from votes: a Bradley-Terry fit a statistician would sign, read from LMArena's format."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from zimage_ui.rating import PRELIMINARY_VOTES, WINNERS, Battle, chart_svg, leaderboard
from zimage_ui.votes import (
    VoteRecord,
    VoteStore,
    counted,
    from_csv,
    pair_counts,
    prompt_hash,
    to_csv,
    voter_id,
)

ROOT = Path(__file__).resolve().parent.parent
TRUE = {"evolink": 1150.0, "runpod": 1050.0, "scenario": 950.0, "aimlapi": 850.0}  # known strengths


def drawn_votes(n: int, seed: int) -> list[VoteRecord]:
    """`n` votes between random pairs, won by the Bradley-Terry chances of `TRUE`; 10% ties."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    votes = []
    for _ in range(n):
        a, b = (names[k] for k in rng.choice(len(names), 2, replace=False))
        p_a = 1 / (1 + 10 ** ((TRUE[b] - TRUE[a]) / 400))
        u = rng.random()
        winner = "tie" if u < 0.1 else ("model_a" if rng.random() < p_a else "model_b")
        votes.append(VoteRecord(a, b, winner, prompt_hash="p", seed=1, width=512, height=512))
    return votes


def cli_leaderboard(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zimage_ui", "leaderboard", "--votes", str(path), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_1200_votes_from_known_strengths_give_the_true_order_with_honest_intervals(tmp_path: Path):
    many, few = tmp_path / "many.csv", tmp_path / "few.csv"
    many.write_text(to_csv(drawn_votes(1200, seed=1)))
    few.write_text(to_csv(drawn_votes(24, seed=2)))
    ran = cli_leaderboard(many, "--json")
    assert ran.returncode == 0, ran.stderr
    rows = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [row["provider"] for row in rows] == sorted(TRUE, key=TRUE.get, reverse=True)  # the true order
    for row in rows:
        assert row["lower"] <= row["rating"] <= row["upper"], row
    assert sum(row["votes"] for row in rows) == 2 * 1200  # each vote counts for both of its sides
    assert not any(row["preliminary"] for row in rows)
    # The true gaps are recovered (ties pull them in a little: a tie is half a win).
    gaps = [rows[k]["rating"] - rows[k + 1]["rating"] for k in range(3)]
    assert all(60 < gap < 140 for gap in gaps), gaps

    small = [json.loads(line) for line in cli_leaderboard(few, "--json").stdout.splitlines()]
    assert sum(row["votes"] for row in small) == 48
    width = {row["provider"]: row["upper"] - row["lower"] for row in rows}
    for row in small:  # 24 votes say far less than 1,200
        assert row["upper"] - row["lower"] > 2.5 * width[row["provider"]], (row, width)
        assert row["preliminary"] == (row["votes"] < PRELIMINARY_VOTES)


def test_the_table_says_what_it_counted_and_the_position_bias(tmp_path: Path):
    votes = drawn_votes(200, seed=3)
    chosen = VoteRecord("runpod", "evolink", "model_a", drawn=False)  # a blind comparison: not counted
    path = tmp_path / "votes.csv"
    path.write_text(to_csv([*votes, chosen]) + "nobody,runpod,a draw,,,,,,,,,,\n")
    ran = cli_leaderboard(path)
    assert ran.returncode == 0, ran.stderr
    assert "200 votes counted" in ran.stdout and "the left side won" in ran.stdout
    assert "line 203: not a vote" in ran.stderr  # the damaged line is named, the rest read
    lines = ran.stdout.splitlines()
    assert lines[1].split()[1] == "evolink"


def test_a_file_that_is_not_a_battle_csv_is_refused_in_words(tmp_path: Path):
    path = tmp_path / "runs.csv"
    path.write_text("id,prompt\n1,a fox\n")
    ran = cli_leaderboard(path)
    assert ran.returncode != 0 and "no counted votes" in ran.stderr
    assert "Traceback" not in ran.stderr
    missing = cli_leaderboard(tmp_path / "nope.csv")
    assert missing.returncode != 0 and "can't read" in missing.stderr and "Traceback" not in missing.stderr


def test_lmarena_files_read_as_they_are_written_and_ours_round_trip():
    lmarena = "model_a,model_b,winner,judge\ngpt,claude,tie (bothbad),x\nclaude,gpt,model_b,y\n"
    votes, problems = from_csv(lmarena)
    assert problems == [] and [v.winner for v in votes] == ["tie (bothbad)", "model_b"]
    assert all(v.drawn for v in votes)  # an outside file's battles count
    ours = [VoteRecord("=cmd()", "runpod", "model_a", seed=5, latency_a=1.25, drawn=False)]
    text = to_csv(ours)
    assert "'=cmd()" in text  # a spreadsheet would run it as a formula
    back, problems = from_csv(text)
    assert problems == [] and back == ours


def test_one_vote_is_not_a_hundred_percent(tmp_path: Path):
    board = leaderboard([Battle("runpod", "evolink", "model_a")])
    top, bottom = board.ratings
    assert top.name == "runpod" and math.isfinite(top.rating) and top.preliminary
    assert top.lower < bottom.upper  # one vote can't separate them
    assert board.left_win_rate == 1.0 and board.battles == 1


def test_votes_are_validated_as_untrusted():
    good = VoteRecord("runpod", "evolink", "tie").as_dict()
    assert VoteRecord.from_dict(good) is not None
    for bad in (
        {**good, "winner": "left"},
        {**good, "model_b": "runpod"},  # a side against itself
        {**good, "model_a": "x" * 500},
        {**good, "seed": "7; drop"},
        {**good, "drawn": "yes"},
        {**good, "extra": 1} | {"model_a": 3},
        "a string",
    ):
        assert VoteRecord.from_dict(bad) is None, bad
    assert set(WINNERS) == {"model_a", "model_b", "tie", "tie (bothbad)"}


def test_the_team_store_keeps_every_vote_once_from_many_threads(tmp_path: Path):
    store = VoteStore(tmp_path / "team.sqlite")
    votes = drawn_votes(40, seed=4)
    threads = [threading.Thread(target=store.add, args=([v],)) for v in votes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.add(votes[:5]) == 0  # the same votes again (an import twice): none new
    kept = VoteStore(tmp_path / "team.sqlite").all()
    assert sorted(v.id for v in kept) == sorted(v.id for v in votes)
    assert sum(pair_counts(kept).values()) == 40 and len(counted(kept)) == 40


def test_ids_name_no_one():
    assert prompt_hash("a fox") == prompt_hash("a fox") != prompt_hash("a fox.")
    assert len(prompt_hash("a fox")) == 16 and "fox" not in prompt_hash("a fox")
    assert voter_id("session-1", "s") != voter_id("session-2", "s") != voter_id("session-2", "t")


def test_the_chart_draws_every_interval():
    board = leaderboard(counted(drawn_votes(100, seed=5)), rounds=50)
    svg = chart_svg(board)
    assert svg.count("<line") == 4 and "<title" in svg and "evolink" in svg


@pytest.mark.parametrize("rounds", [50])
def test_the_bootstrap_is_repeatable(rounds: int):
    battles = counted(drawn_votes(100, seed=6))
    assert leaderboard(battles, rounds=rounds) == leaderboard(battles, rounds=rounds)


def test_a_crafted_file_of_thousands_of_sides_is_rated_in_bounded_work():
    from zimage_ui.rating import MAX_RATED

    battles = [Battle(f"side-{k}", f"side-{k + 1}", "model_a") for k in range(5000)]
    battles += [Battle("runpod", "evolink", "model_a")] * 40
    board = leaderboard(battles, rounds=20)
    assert len(board.ratings) <= MAX_RATED and board.left_out > 4900
    assert {"runpod", "evolink"} <= {row.name for row in board.ratings}
