import csv
import io
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from zimage_ui.history import CSV_HEADER, HISTORY_ENV, HistoryStore, history_from_env
from zimage_ui.keyguard import key_env_names
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import Cost, RunResult
from zimage_ui.runner import Outcome

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
FAKE_KEY = "rp-history-fake-key-987654"


@pytest.fixture(autouse=True)
def no_keys_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in key_env_names():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(tmp_path / "sub" / "history.sqlite")


def add(store: HistoryStore, prompt: str, minutes: int = 0, **values: object) -> int:
    params = GenerationParams(prompt=prompt, seed=values.pop("seed", 7))  # type: ignore[arg-type]
    fields = {"provider": "runpod", "seed": params.seed, "elapsed_s": 1.5, **values}
    return store.record(params=params, created_at=T0 + timedelta(minutes=minutes), **fields)  # type: ignore[arg-type]


def test_record_and_read_back_every_field(store: HistoryStore):
    params = GenerationParams(prompt="a fox, at: dawn", negative_prompt="blur", width=512, seed=None)
    row_id = store.record(
        provider="scenario",
        params=params,
        seed=1234,
        elapsed_s=3.25,
        queue_s=0.5,
        run_s=2.5,
        cost="$0.0040",
        image_paths=[Path("outputs/scenario-1234-0.png"), "outputs/scenario-1234-1.png"],
        error=None,
        created_at=T0,
    )
    [row] = store.search()
    assert row.id == row_id
    assert (row.provider, row.prompt, row.seed, row.cost) == ("scenario", "a fox, at: dawn", 1234, "$0.0040")
    assert (row.elapsed_s, row.queue_s, row.run_s) == (3.25, 0.5, 2.5)
    assert row.image_paths == ["outputs/scenario-1234-0.png", "outputs/scenario-1234-1.png"]
    assert row.created_at == "2025-03-01T12:00:00.000000+00:00"
    assert row.error is None
    assert row.generation_params() == params.model_copy(update={"seed": 1234})


def test_search_is_a_substring_newest_first(store: HistoryStore):
    add(store, "a red fox", minutes=0)
    add(store, "an owl at night", minutes=1)
    add(store, "a FOX in snow", minutes=2)
    assert [row.prompt for row in store.search("fox")] == ["a FOX in snow", "a red fox"]
    assert [row.prompt for row in store.search()] == ["a FOX in snow", "an owl at night", "a red fox"]
    assert [row.prompt for row in store.search("", limit=1)] == ["a FOX in snow"]
    assert store.search("badger") == []


def test_search_text_is_data_not_sql_or_wildcards(store: HistoryStore):
    add(store, "100% cotton", minutes=0)
    add(store, "snake_case", minutes=1)
    add(store, "plain", minutes=2)
    add(store, "back\\slash", minutes=3)
    assert [row.prompt for row in store.search("%")] == ["100% cotton"]
    assert [row.prompt for row in store.search("_")] == ["snake_case"]
    assert [row.prompt for row in store.search("\\")] == ["back\\slash"]
    assert store.search("'; DROP TABLE runs; --") == []
    assert len(store.search()) == 4


def test_limit_is_clamped(store: HistoryStore):
    for minute in range(3):
        add(store, f"fox {minute}", minutes=minute)
    assert len(store.search(limit=0)) == 1
    assert len(store.search(limit=10**9)) == 3


def test_failed_runs_are_recorded(store: HistoryStore):
    add(store, "fox", error="runpod: the job failed: try again")
    [row] = store.search()
    assert row.error == "runpod: the job failed: try again"


def test_history_survives_reopening(tmp_path: Path):
    path = tmp_path / "h.sqlite"
    add(HistoryStore(path), "kept")
    assert [row.prompt for row in HistoryStore(path).search()] == ["kept"]


def test_record_outcome_from_the_runner(store: HistoryStore):
    prepared = PROVIDERS["diffusers-tiny"].prepare(GenerationParams(prompt="fox", seed=None))
    result = RunResult(
        provider="diffusers-tiny",
        images=[],
        seed=prepared.sent.seed,
        sent=prepared.sent,
        elapsed_s=1.0,
        queue_s=0.25,
        run_s=0.75,
        cost=Cost(0.004, "USD"),
    )
    outcome = Outcome(provider="diffusers-tiny", prepared=prepared, result=result, elapsed_s=1.2)
    assert store.record_outcome(outcome, ["outputs/a.png"]) is not None
    assert store.record_outcome(Outcome(provider="runpod", error="runpod: no key")) is None
    [row] = store.search()
    assert (row.seed, row.queue_s, row.run_s, row.cost) == (prepared.sent.seed, 0.25, 0.75, "$0.0040")
    assert row.generation_params() == prepared.params


def test_concurrent_records_from_many_threads(store: HistoryStore):
    ids: list[int] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for index in range(20):
            row_id = add(store, f"worker {worker} prompt {index}", minutes=index)
            with lock:
                ids.append(row_id)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 160
    assert len(store.search(limit=1000)) == 160


def test_keys_are_never_stored(store: HistoryStore, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNPOD_API_KEY", FAKE_KEY)
    add(
        store,
        f"prompt with {FAKE_KEY}",
        error=f"runpod: unexpected error (Bearer {FAKE_KEY})",
        cost=FAKE_KEY,
        image_paths=[f"/tmp/{FAKE_KEY}.png"],
    )
    add(store, "page key page-typed-key-1234", secrets=["page-typed-key-1234"])
    raw = store.path.read_bytes()
    assert FAKE_KEY.encode() not in raw and b"page-typed-key-1234" not in raw
    with sqlite3.connect(store.path) as db:
        dumped = "\n".join(db.iterdump())
    assert FAKE_KEY not in dumped and "page-typed-key-1234" not in dumped
    assert FAKE_KEY not in store.export_csv()
    assert store.search("prompt with")[0].prompt == "prompt with ***"


def test_csv_export(store: HistoryStore):
    add(
        store, 'a fox, "quoted"\nsecond line', minutes=0, seed=3, cost="$0.01", image_paths=["a.png", "b.png"]
    )
    add(store, '=HYPERLINK("http://evil")', minutes=1, error="-1 credits left")
    rows = list(csv.reader(io.StringIO(store.export_csv())))
    assert rows[0] == list(CSV_HEADER)
    first = dict(zip(CSV_HEADER, rows[1], strict=True))
    assert first["prompt"] == 'a fox, "quoted"\nsecond line'
    assert (first["seed"], first["width"], first["steps"], first["cost"]) == ("3", "1024", "8", "$0.01")
    assert first["images"] == "a.png b.png" and first["error"] == ""
    second = dict(zip(CSV_HEADER, rows[2], strict=True))
    assert second["prompt"] == '\'=HYPERLINK("http://evil")'  # not run as a formula by a spreadsheet
    assert second["error"] == "'-1 credits left"
    assert len(rows) == 3


def test_history_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    assert history_from_env() is None
    monkeypatch.setenv(HISTORY_ENV, str(tmp_path / "team" / "runs.sqlite"))
    store = history_from_env()
    assert store is not None and store.path == tmp_path / "team" / "runs.sqlite"
    assert store.path.exists()


def test_schema_is_versioned(store: HistoryStore):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
