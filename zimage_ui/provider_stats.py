"""What each provider has cost the people using this instance: runs, success, latency, failures by
kind and money per image, from the team's run log (or, on a public Space, the visitor's own runs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunRecord:
    """One run, as the view counts it (no prompt, no key)."""

    provider: str
    tstamp: str  # ISO 8601, UTC
    ok: bool
    stopped: bool
    failure: str | None  # `errors.failure_kind` of a failed run
    elapsed_s: float
    images: int
    cost_usd: float | None

    @classmethod
    def from_dict(cls, data: object) -> RunRecord | None:
        """A record a browser sent back: None unless every field has its type."""
        if not isinstance(data, Mapping):
            return None
        try:
            record = cls(
                provider=str(data["provider"])[:40],
                tstamp=str(data["tstamp"])[:40],
                ok=bool(data["ok"]),
                stopped=bool(data.get("stopped", False)),
                failure=None if data.get("failure") is None else str(data["failure"])[:40],
                elapsed_s=float(data["elapsed_s"]),
                images=int(data.get("images", 0)),
                cost_usd=None if data.get("cost_usd") is None else float(data["cost_usd"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return record if np.isfinite(record.elapsed_s) and record.elapsed_s >= 0 else None


@dataclass(frozen=True)
class Price:
    usd_per_image: float
    source: str
    read_on: str


# Prices a provider publishes per image, with where each was read. A run's own reported cost is
# preferred; these stand in where a provider reports none.
PUBLISHED_PRICES: dict[str, Price] = {
    "runpod": Price(
        0.005, "Runpod's Z-Image Turbo public endpoint page, docs.runpod.io ('Pricing')", "2026-12-02"
    ),
}


@dataclass(frozen=True)
class ProviderStats:
    provider: str
    runs: int  # stopped runs left out: the person ended them
    succeeded: int
    median_s: float | None  # of successful runs
    p95_s: float | None
    failures: Counter[str]
    cost_per_image: str  # in words, with where it comes from

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.runs if self.runs else 0.0


def provider_stats(records: Iterable[RunRecord]) -> list[ProviderStats]:
    """One row per provider, most runs first."""
    by_provider: dict[str, list[RunRecord]] = {}
    for record in records:
        if not record.stopped:
            by_provider.setdefault(record.provider, []).append(record)
    rows = []
    for provider, runs in by_provider.items():
        good = [r for r in runs if r.ok]
        times = np.array([r.elapsed_s for r in good]) if good else None
        rows.append(
            ProviderStats(
                provider=provider,
                runs=len(runs),
                succeeded=len(good),
                median_s=float(np.median(times)) if times is not None else None,
                p95_s=float(np.percentile(times, 95)) if times is not None else None,
                failures=Counter(r.failure or "unexpected error" for r in runs if not r.ok),
                cost_per_image=_cost_per_image(provider, good),
            )
        )
    return sorted(rows, key=lambda row: (-row.runs, row.provider))


def _cost_per_image(provider: str, good: list[RunRecord]) -> str:
    billed = [r for r in good if r.cost_usd is not None and r.images]
    if billed:
        per_image = sum(r.cost_usd or 0.0 for r in billed) / sum(r.images for r in billed)
        return f"${per_image:.4f} (as its runs reported)"
    price = PUBLISHED_PRICES.get(provider)
    if price is not None:
        return f"${price.usd_per_image:.4f} (published: {price.source}, read {price.read_on})"
    return "no price published"


STATS_COLUMNS = ["Provider", "Runs", "Succeeded", "Median s", "p95 s", "Failures", "Cost per image"]


def stats_rows(rows: list[ProviderStats]) -> list[list[Any]]:
    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    return [
        [
            row.provider,
            row.runs,
            f"{row.succeeded} ({row.success_rate:.0%})",
            seconds(row.median_s),
            seconds(row.p95_s),
            ", ".join(f"{kind}: {n}" for kind, n in row.failures.most_common()) or "none",
            row.cost_per_image,
        ]
        for row in rows
    ]


def latency_points(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """Each successful run's time, for the latency chart."""
    return [{"provider": r.provider, "seconds": r.elapsed_s} for r in records if r.ok and not r.stopped]


def success_by_hour(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """Per provider and hour (UTC): the share of runs that succeeded, for the chart over time."""
    tally: dict[tuple[str, str], list[int]] = {}
    for r in records:
        if r.stopped:
            continue
        counts = tally.setdefault((r.provider, r.tstamp[:13]), [0, 0])
        counts[0] += r.ok
        counts[1] += 1
    return [
        {"provider": provider, "hour": f"{hour}:00", "success": ok / total, "runs": total}
        for (provider, hour), (ok, total) in sorted(tally.items(), key=lambda item: item[0][1])
    ]
