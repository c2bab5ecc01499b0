"""Ratings from arena votes: a Bradley-Terry fit by maximum likelihood with bootstrap intervals,
on the Elo-like scale LMArena uses (400 points per tenfold odds, centred at 1000).

P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)). A tie (or "both bad") counts as half a win
for each side. The fit is scipy's L-BFGS on the log-likelihood with its exact gradient: the
problem is a small smooth convex one, scipy is already here (diffusers' schedulers use it) and
well kept, and it needs nothing a team couldn't check by hand. A weak prior (a Gaussian of
standard deviation 2 on the log-strengths, about 350 rating points) keeps a side that won its only
vote finite (about +140, not infinity) and moves no rating that a few dozen votes determine.

The 95% interval of each rating is the 2.5th to 97.5th percentile over bootstrap resamples of the
votes, widened where needed to the normal approximation (1.96 standard errors from the fit's
curvature): a bootstrap of a handful of unanimous votes has no spread to show, yet says little.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

SCALE = 400 / math.log(10)  # rating points per unit of log-strength
CENTRE = 1000.0
PRIOR_SD = 2.0  # log-strength units: keeps an unbeaten side finite
BOOTSTRAP_ROUNDS = 300
MAX_RATED = 64  # sides rated at once: the fit's curvature is a sides x sides matrix inverted
PRELIMINARY_VOTES = 30  # fewer votes than this: the rating is marked preliminary
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")  # LMArena's battle format


@dataclass(frozen=True)
class Battle:
    """One counted vote: who was on each side and who won (`WINNERS`)."""

    model_a: str
    model_b: str
    winner: str


@dataclass(frozen=True)
class Rating:
    name: str
    rating: float
    lower: float  # 95% bootstrap interval
    upper: float
    votes: int  # every vote counts for both of its sides
    rank: int  # 1 + the number of sides whose interval lies wholly above this one's

    @property
    def preliminary(self) -> bool:
        return self.votes < PRELIMINARY_VOTES


@dataclass(frozen=True)
class Leaderboard:
    ratings: list[Rating]  # best first
    battles: int
    left_win_rate: float | None  # of votes with a winner, how often model_a (the left side) won
    left_out: int = 0  # votes of sides past the MAX_RATED with the most votes: not rated


def _cells(battles: Sequence[Battle], names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The votes as (i, j, how often i beat j) cells: a tie is half a win each way."""
    index = {name: k for k, name in enumerate(names)}
    tally: dict[tuple[int, int], float] = defaultdict(float)
    for battle in battles:
        a, b = index[battle.model_a], index[battle.model_b]
        if battle.winner == "model_a":
            tally[(a, b)] += 1.0
        elif battle.winner == "model_b":
            tally[(b, a)] += 1.0
        else:
            tally[(a, b)] += 0.5
            tally[(b, a)] += 0.5
    pairs = sorted(tally)
    winners = np.array([i for i, _ in pairs], dtype=np.intp)
    losers = np.array([j for _, j in pairs], dtype=np.intp)
    return winners, losers, np.array([tally[pair] for pair in pairs], dtype=float)


def _fit(winners: np.ndarray, losers: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Log-strengths (mean 0) that maximise the likelihood of the weighted wins."""

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = theta[winners] - theta[losers]
        # -log sigmoid(margin), stable for any margin
        nll = float(np.sum(weights * np.logaddexp(0.0, -margin))) + float(theta @ theta) / (2 * PRIOR_SD**2)
        pull = weights * (1.0 / (1.0 + np.exp(margin)))  # d(nll)/d(margin) = -pull
        grad = theta / PRIOR_SD**2
        np.add.at(grad, winners, -pull)
        np.add.at(grad, losers, pull)
        return nll, grad

    result = minimize(loss, np.zeros(size), jac=True, method="L-BFGS-B", options={"gtol": 1e-9})
    theta = np.asarray(result.x)
    return theta - theta.mean()


def leaderboard(battles: Iterable[Battle], rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> Leaderboard:
    """Ratings with 95% bootstrap intervals and vote counts, best first."""
    battles = list(battles)
    # A crafted file or browser can name thousands of sides; the fit inverts a sides x sides matrix,
    # so only the MAX_RATED sides with the most votes are rated, and the rest is counted as left out.
    most = Counter(name for b in battles for name in (b.model_a, b.model_b)).most_common(MAX_RATED)
    rated = {name for name, _count in most}
    kept = [b for b in battles if b.model_a in rated and b.model_b in rated]
    left_out, battles = len(battles) - len(kept), kept
    names = sorted({name for b in battles for name in (b.model_a, b.model_b)})
    if not battles:
        return Leaderboard([], 0, None, left_out)
    winners, losers, weights = _cells(battles, names)
    ratings = CENTRE + SCALE * _fit(winners, losers, weights, len(names))
    # Resampling the votes with replacement is a multinomial draw over the kinds of vote (pair and
    # outcome); each kind adds fixed weights to the cells, so a resample's weights are one product.
    outcomes = Counter((b.model_a, b.model_b, b.winner) for b in battles)
    kinds = list(outcomes)
    cell = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(winners, losers, strict=True))}
    per_kind = np.zeros((len(cell), len(kinds)))
    for k, (a, b, winner) in enumerate(kinds):
        one_w, one_l, one = _cells([Battle(a, b, winner)], names)
        for i, j, amount in zip(one_w, one_l, one, strict=True):
            per_kind[cell[(int(i), int(j))], k] += amount
    shares = np.array([outcomes[k] for k in kinds], dtype=float) / len(battles)
    draws = np.random.default_rng(seed).multinomial(len(battles), shares, size=rounds)
    samples = np.empty((rounds, len(names)))
    for r, counts in enumerate(draws):
        samples[r] = CENTRE + SCALE * _fit(winners, losers, per_kind @ counts, len(names))
    spread = 1.96 * SCALE * _standard_errors(winners, losers, weights, (ratings - CENTRE) / SCALE)
    lower = np.minimum(np.percentile(samples, 2.5, axis=0), ratings - spread)
    upper = np.maximum(np.percentile(samples, 97.5, axis=0), ratings + spread)
    votes = Counter(name for b in battles for name in (b.model_a, b.model_b))
    rows = []
    for k, name in enumerate(names):
        rank = 1 + sum(lower[other] > upper[k] for other in range(len(names)) if other != k)
        rows.append(Rating(name, float(ratings[k]), float(lower[k]), float(upper[k]), votes[name], int(rank)))
    rows.sort(key=lambda row: (-row.rating, row.name))
    decided = [b for b in battles if b.winner in ("model_a", "model_b")]
    left = sum(b.winner == "model_a" for b in decided) / len(decided) if decided else None
    return Leaderboard(rows, len(battles), left, left_out)


def _standard_errors(
    winners: np.ndarray, losers: np.ndarray, weights: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """Each centred log-strength's standard error: the inverse of the penalised likelihood's
    curvature (the observed information), projected on the centred ratings."""
    size = len(theta)
    p = 1.0 / (1.0 + np.exp(-(theta[winners] - theta[losers])))
    curvature = np.eye(size) / PRIOR_SD**2
    for i, j, w, q in zip(winners, losers, weights, p, strict=True):
        c = w * q * (1.0 - q)
        curvature[i, i] += c
        curvature[j, j] += c
        curvature[i, j] -= c
        curvature[j, i] -= c
    centre = np.eye(size) - 1.0 / size
    covariance = centre @ np.linalg.inv(curvature) @ centre
    return np.sqrt(np.clip(np.diag(covariance), 0.0, None))


LEADERBOARD_COLUMNS = ["Rank", "Provider", "Rating", "95% interval", "Votes", "Note"]


def table_rows(board: Leaderboard) -> list[list[object]]:
    """The leaderboard as table rows (`LEADERBOARD_COLUMNS`)."""
    return [
        [
            row.rank,
            row.name,
            round(row.rating),
            f"{round(row.lower)} – {round(row.upper)}",
            row.votes,
            f"preliminary (under {PRELIMINARY_VOTES} votes)" if row.preliminary else "",
        ]
        for row in board.ratings
    ]


def as_json(board: Leaderboard) -> list[dict[str, object]]:
    """One object per side: its rating, the interval's bounds and its vote count."""
    return [
        {
            "provider": row.name,
            "rating": round(row.rating, 1),
            "lower": round(row.lower, 1),
            "upper": round(row.upper, 1),
            "votes": row.votes,
            "rank": row.rank,
            "preliminary": row.preliminary,
        }
        for row in board.ratings
    ]


def chart_svg(board: Leaderboard, width: int = 640) -> str:
    """The ratings with their intervals as an SVG: one row per side, best on top, so overlapping
    intervals show at a glance."""
    rows = board.ratings
    if not rows:
        return ""
    low, high = min(r.lower for r in rows), max(r.upper for r in rows)
    span = max(high - low, 1.0)
    left, right, row_h = 170, width - 20, 28
    height = 30 + row_h * len(rows)

    def x(value: float) -> float:
        return left + (value - low) / span * (right - left)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" aria-labelledby="rating-chart-title">',
        '<title id="rating-chart-title">Ratings with 95% intervals, best first</title>',
        "<style>text{font:13px sans-serif;fill:currentColor}</style>",
    ]
    for k, row in enumerate(rows):
        y = 20 + k * row_h
        label = _escape(row.name[:24]) + (" *" if row.preliminary else "")
        parts += [
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{label}</text>',
            f'<line x1="{x(row.lower):.1f}" x2="{x(row.upper):.1f}" y1="{y}" y2="{y}" '
            'stroke="currentColor" stroke-width="2"/>',
            f'<circle cx="{x(row.rating):.1f}" cy="{y}" r="4" fill="#c2410c"/>',
            f'<text x="{x(row.rating):.1f}" y="{y - 7}" text-anchor="middle">{round(row.rating)}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
