"""What a generation setting is, written once.

Each `Setting` names the canonical name (diffusers', a `GenerationParams` field), the short name
the page, the API, the CLI (`--steps`), a Compare side (`steps=4`), a sweep axis and a share link
use, its type, range, default, help and label, whether a Compare side may override it, whether it
is a sweep axis, and its key in A1111's parameters text. Everything else is derived from
`SETTINGS`: the params model and its field docs (`params`), the CLI flags (`cli`), the page's
controls, `SETTING_DOCS` and the `/generate`, `/compare` and `/sweep` signatures (`ui.form`), the
Side and sweep readers (`compare`, `sweep`), the link names (`preset_sharing`) and the infotext
keys (`infotext`, `metadata`). Each derivation takes the table as an argument (this one by
default), so a test can add a setting to a copy and see it everywhere.

The order is the order of the page's form and of the API's arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

# Seeds: every hosted provider takes 0..MAX_SEED (Scenario and EvoLink document 2147483647 as their
# top; the others document none, and it keeps a signed 32-bit field), so random seeds stay below it.
# The local pipeline seeds a torch generator, which takes any 64-bit value; GenerationParams takes
# up to MAX_LOCAL_SEED, the top of AUTOMATIC1111's range (it draws seeds up to 4294967294), so a
# seed read from an A1111 image is kept: the local model uses it, a hosted provider refuses it.
MAX_SEED = 2_147_483_647
MAX_LOCAL_SEED = 4_294_967_295
MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = 256, 2048, 16
MIN_STEPS, MAX_STEPS = 1, 50
TURBO_STEPS = 8
TURBO_SHIFT = 3.0

Kind = type[int] | type[float] | type[str]
Control = Literal["text", "number", "slider", "seed"]
Value = int | float | str | None


@dataclass(frozen=True)
class Setting:
    """One generation setting, everything every layer needs to know about it."""

    name: str  # canonical: the GenerationParams field (diffusers' name)
    short: str  # the form's, the API's, the CLI's (--short-name), a side's, an axis', a link's
    kind: Kind
    default: Value  # None: required (the prompt) or random (the seed)
    help: str  # one line: the params field doc, the CLI help, the API and MCP argument doc
    label: str  # on the page, and in messages ("Steps")
    low: float | None = None  # the inclusive range; None: not a number
    high: float | None = None
    outside: str = "{value} is outside {low}..{high}"  # the message for a value out of range
    control: Control = "number"
    step: float = 1  # a slider's step
    metavar: str = "N"
    side: bool = False  # a Compare side may override it (`steps=4`)
    sweep: bool = False  # a sweep axis
    infotext: str | None = None  # its key in A1111's parameters text; None: not written there
    turbo: Value = None  # the value Turbo needs, where another model's value would not suit it
    example: str = ""  # for an override's error message: `steps=4`
    multiple: int | None = None  # a value must be a multiple of this (the sizes)

    @property
    def flag(self) -> str:
        return "--" + self.short.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is None and self.kind is str

    @property
    def ranged(self) -> bool:
        return self.low is not None and self.high is not None

    def range_text(self) -> str:
        return f"{self.low:g}..{self.high:g}" if self.ranged else ""

    def problem(self, value: float) -> str | None:
        """The message for a value out of range, or None when it is in range."""
        if self.low is None or self.high is None or self.low <= value <= self.high:
            return None
        return self.outside.format(value=value, low=_number(self.low), high=_number(self.high))


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "prompt",
        "prompt",
        str,
        None,
        "What to draw, in plain words.",
        "Prompt",
        control="text",
        metavar="TEXT",
    ),
    Setting(
        "negative_prompt",
        "negative_prompt",
        str,
        "",
        "What to keep out; used only where it has an effect (locally: guidance above 0).",
        "Negative prompt",
        control="text",
        metavar="TEXT",
    ),
    *(
        Setting(
            side,
            side,
            int,
            1024,
            f"{side.capitalize()} in pixels, a multiple of {SIDE_MULTIPLE} in {MIN_SIDE}..{MAX_SIDE}"
            + (" (a provider snaps to its sizes)." if side == "width" else "."),
            side.capitalize(),
            MIN_SIDE,
            MAX_SIDE,
            "{value} is outside {low}..{high} pixels",
            step=SIDE_MULTIPLE,
            metavar="PX",
            side=True,
            example="512",
            multiple=SIDE_MULTIPLE,
        )
        for side in ("width", "height")
    ),
    Setting(
        "seed",
        "seed",
        int,
        None,
        f"The seed: 0..{MAX_SEED} for every provider, up to {MAX_LOCAL_SEED} on the local model; "
        "empty or random: one is drawn, and the seed used is returned.",
        "Seed",
        0,
        MAX_LOCAL_SEED,
        "{value} is outside 0..{high} (0..%s for hosted providers)".replace("%s", str(MAX_SEED)),
        control="seed",
        sweep=True,
        infotext="Seed",
    ),
    Setting(
        "num_inference_steps",
        "steps",
        int,
        TURBO_STEPS,
        "Denoising steps (Turbo: 8); providers that pick their own steps say so and ignore it.",
        "Steps",
        MIN_STEPS,
        MAX_STEPS,
        "{value} steps is outside {low}..{high} (Turbo needs 8)",
        control="slider",
        side=True,
        sweep=True,
        infotext="Steps",
        turbo=TURBO_STEPS,
        example="4",
    ),
    Setting(
        "guidance_scale",
        "guidance",
        float,
        0.0,
        "Classifier-free guidance (Turbo: 0).",
        "Guidance",
        0.0,
        20.0,
        "guidance {value} is outside {low}..{high} (Turbo uses 0)",
        control="slider",
        step=0.5,
        metavar="X",
        infotext="CFG scale",
        turbo=0.0,
    ),
    Setting(
        "shift",
        "shift",
        float,
        TURBO_SHIFT,
        "The flow-matching scheduler's shift (Turbo: 3).",
        "Shift",
        1.0,
        10.0,
        "shift {value} is outside {low}..{high} (Turbo uses 3)",
        control="slider",
        step=0.1,
        metavar="X",
        side=True,
        sweep=True,
        infotext="Shift",
        example="3",
    ),
    Setting(
        "num_images",
        "num_images",
        int,
        1,
        "Images per run, 1..4; image i uses seed + i, so each can be made again alone.",
        "Number of images",
        1,
        4,
        "{value} images is outside {low}..{high}",
        control="slider",
    ),
    Setting(
        "variety",
        "variety",
        float,
        0.0,
        "Seed variety, 0..1 (the local model): noise drawn from the seed added to the prompt's "
        "embeddings, so different seeds differ more; 0 is the usual image.",
        "Variety",
        0.0,
        1.0,
        "variety {value} is outside {low}..{high}",
        control="slider",
        step=0.05,
        metavar="X",
        sweep=True,
        infotext="Variety",
        example="0.5",
    ),
)


class Table:
    """Lookups over a table of settings (by canonical or short name); iterates in form order."""

    def __init__(self, settings: Iterable[Setting] = SETTINGS) -> None:
        self.settings = tuple(settings)
        self.by_name = {setting.name: setting for setting in self.settings}
        self.by_short = {setting.short: setting for setting in self.settings}

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.settings)

    def __getitem__(self, name: str) -> Setting:
        """By canonical name, else by short name."""
        return self.by_name.get(name) or self.by_short[name]

    def with_setting(self, setting: Setting) -> Table:
        """A copy with one more setting (tests: a made-up setting appears everywhere)."""
        return Table((*self.settings, setting))

    def short_to_name(self) -> dict[str, str]:
        return {setting.short: setting.name for setting in self.settings}

    def name_to_short(self) -> dict[str, str]:
        return {setting.name: setting.short for setting in self.settings}

    def side_keys(self) -> dict[str, str]:
        return {setting.short: setting.name for setting in self.settings if setting.side}

    def sweep_fields(self) -> dict[str, str]:
        return {setting.short: setting.name for setting in self.settings if setting.sweep}

    def infotext_keys(self) -> dict[str, Setting]:
        return {setting.infotext: setting for setting in self.settings if setting.infotext}

    def turbo_tuned(self) -> tuple[str, ...]:
        return tuple(setting.name for setting in self.settings if setting.turbo is not None)


TABLE = Table()
