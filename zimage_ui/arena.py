"""The arena's sides and how a battle's pair is drawn.

A side (`Contender`) is a provider, or a provider at a number of steps: `runpod`,
`diffusers:steps=4`. The app draws each pair, never the voter: among the pairs of usable sides
with the fewest votes so far, one at random, its order (left, right) at random. Both get the
same prompt, seed and size.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from zimage_ui import env
from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS, availability
from zimage_ui.providers.base import KeyRing

NOISE = "diffusers-tiny"  # untrained weights: only in the arena when nothing else can run
TWO_SETTINGS = (4, 8)  # one usable provider alone battles itself at these steps
_SIDE = re.compile(r"\s*([\w.-]+)\s*(?::\s*steps\s*=\s*(\d{1,3})\s*)?")


@dataclass(frozen=True)
class Contender:
    provider: str
    steps: int | None = None

    @property
    def name(self) -> str:
        """As the leaderboard and the votes name it: `runpod`, `diffusers:steps=4`."""
        return self.provider if self.steps is None else f"{self.provider}:steps={self.steps}"

    def params(self, shared: GenerationParams) -> GenerationParams:
        """The battle's params as this side runs them: its own steps where it has them."""
        if self.steps is None:
            return shared
        return shared.model_copy(update={"num_inference_steps": self.steps})

    @classmethod
    def parse(cls, text: str) -> Contender:
        match = _SIDE.fullmatch(text)
        if not match or match[1] not in PROVIDERS:
            raise InvalidParams({"ZIMAGE_ARENA": f"{text.strip()[:60]!r} is not provider[:steps=N]"})
        return cls(match[1], int(match[2]) if match[2] else None)


def contenders(keys: KeyRing, configured: str | None = None) -> list[Contender]:
    """The sides a battle may draw: those configured (`ZIMAGE_ARENA`) whose provider is usable
    here; else every usable provider but the noise-making tiny model; else, with fewer than two,
    the one usable provider at 4 and at 8 steps (two settings of one provider)."""
    usable = [pid for pid, status in availability(keys).items() if status.usable]
    text = env.raw("ZIMAGE_ARENA") if configured is None else configured
    if text.strip():
        chosen = [Contender.parse(part) for part in text.split(",") if part.strip()]
        return list(dict.fromkeys(c for c in chosen if c.provider in usable))
    real = [Contender(pid) for pid in usable if pid != NOISE]
    if len(real) >= 2:
        return real
    alone = real[0].provider if real else (NOISE if NOISE in usable else None)
    return [Contender(alone, steps) for steps in TWO_SETTINGS] if alone else []


def draw_pair(
    sides: Sequence[Contender], votes: Counter[frozenset[str]], rng: random.Random | None = None
) -> tuple[Contender, Contender]:
    """A pair among those with the fewest votes so far, at random, in a random order."""
    if len(sides) < 2:
        raise InvalidParams({"arena": "fewer than two sides can run here: add a key, or set ZIMAGE_ARENA"})
    rng = rng or random.SystemRandom()
    pairs = list(itertools.combinations(sides, 2))
    fewest = min(votes[frozenset((a.name, b.name))] for a, b in pairs)
    left, right = rng.choice(
        [pair for pair in pairs if votes[frozenset((pair[0].name, pair[1].name))] == fewest]
    )
    return (left, right) if rng.random() < 0.5 else (right, left)
