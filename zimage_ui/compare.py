"""One prompt and seed on many sides at once: each side a provider plus optional overrides.

A comparison takes about as long as its slowest side, not the sum: every side starts
together. A failing side keeps its error in place; the others finish.

A side is written `ID` or `ID:key=value,...` (the CLI's `--provider`, a share link's
`sides=`, one `;`-separated item each), with the short names in `SIDE_KEYS` plus
`size=WxH`. Blank values mean "shared". `strength=` and `lora_scale=` change the shared image
inputs: the input image's strength, and the scale of every LoRA (all of them, not only the
first). A label can't hold `,` or `;` (they separate overrides and sides); values are read
without their outer spaces.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from zimage_ui.cancel import CancelToken
from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome, generate_one
from zimage_ui.settings import TABLE, Setting, Table
from zimage_ui.sizes import parse_size

if TYPE_CHECKING:
    from typing_extensions import Self

MIN_SIDES, MAX_SIDES = 2, 6

SideProgress = Callable[[int, Progress], None]

# Overrides of the shared image inputs rather than of a top-level parameter.
INPUT_OVERRIDES = ("strength", "lora_scale")
SIZE_KEY = "size"  # size=WxH sets width and height


@functools.cache
def side_settings(table: Table = TABLE) -> tuple[Setting, ...]:
    """The settings a side may override, in the order they are written: the sizes last. Worked
    out once per table (a side's title, spec and overrides ask for it on every call)."""
    return tuple(sorted((s for s in table if s.side), key=lambda s: s.multiple is not None))


def side_keys(table: Table = TABLE) -> dict[str, str]:
    """A side's short names (spec, CLI, links, titles) -> Side field, in the order they are written."""
    settings = {setting.short: setting.name for setting in side_settings(table)}
    return {**settings, **{name: name for name in INPUT_OVERRIDES}, "label": "label"}


def allowed_keys(table: Table = TABLE) -> str:
    settings = [setting.short for setting in side_settings(table)]
    sized = [setting.short for setting in side_settings(table) if setting.multiple]
    plain = [short for short in settings if short not in sized]
    return ", ".join([*plain, SIZE_KEY, *sized, *INPUT_OVERRIDES]) + " or label"


SIDE_KEYS = side_keys()
ALLOWED_KEYS = allowed_keys()
_WHOLE = re.compile(r"[+-]?\d{1,12}")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_PROVIDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SEPARATORS = (",", ";")  # between overrides, between a link's sides: never in a label


def _whole(text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise ValueError("is not a whole number")
    return int(text)


def _number(text: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValueError("is not a number")
    return float(text)


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError:
        raise ValueError("is not WxH") from None


def _label(text: str) -> str:
    if any(separator in text for separator in _SEPARATORS):
        raise ValueError("has ',' or ';', which a label can't hold")
    return text


def _readers(table: Table) -> dict[str, Callable[[str], Any]]:
    """How each override's text is read: the table's by their type, then the size, the input
    overrides and the label."""
    readers: dict[str, Callable[[str], Any]] = {
        setting.short: _whole if setting.kind is int else _number for setting in side_settings(table)
    }
    return {**readers, "strength": _number, "lora_scale": _number, "label": _label, SIZE_KEY: _size}


def _examples(table: Table) -> dict[str, str]:
    examples = {setting.short: f"{setting.short}={setting.example}" for setting in side_settings(table)}
    return {
        **examples,
        "strength": "strength=0.4",
        "lora_scale": "lora_scale=0.8",
        "label": "label=fast",
        SIZE_KEY: "size=512x512",
    }


class SideCore(BaseModel):
    """One column of a comparison: where, and what differs from the shared settings. The fields
    a side may override come from the settings table (`side_model`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _table: ClassVar[Table] = TABLE
    if TYPE_CHECKING:  # fields of every side model
        provider: str
        strength: float | None
        lora_scale: float | None
        label: str

    def overrides(self) -> dict[str, int | float]:
        names = [setting.name for setting in side_settings(self._table)] + list(INPUT_OVERRIDES)
        values = {name: getattr(self, name) for name in names}
        return {name: value for name, value in values.items() if value is not None}

    @field_validator("strength", check_fields=False)
    @classmethod
    def _strength(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"strength {value:g} is outside 0..1")
        return value

    @field_validator("lora_scale", check_fields=False)
    @classmethod
    def _lora_scale(cls, value: float | None) -> float | None:
        if value is not None and not -4.0 <= value <= 4.0:
            raise ValueError(f"LoRA scale {value:g} is outside -4..4")
        return value

    def title(self) -> str:
        """The label, else the provider and its overrides, e.g. `runpod (steps 4, shift 2.5)`."""
        if self.label:
            return self.label
        short = _short_names_of(self._table)
        extra = ", ".join(f"{short[name]} {value:g}" for name, value in self.overrides().items())
        return f"{self.provider} ({extra})" if extra else self.provider

    @classmethod
    def from_overrides(cls, provider: str, overrides: Mapping[str, str]) -> Self:
        """A side from a provider id and short-name overrides (`{"steps": "4", "size": "512x512"}`).

        Blank values stay shared. Raises InvalidParams with one entry per bad key, each
        naming the text and what to type; a subclass's own rules (e.g. PresetSide's
        registered providers) are reported the same way, under the short names.
        """
        problems: dict[str, str] = {}
        provider = provider.strip()
        if not provider:
            problems["provider"] = "empty: give a provider id, e.g. diffusers-tiny"
        elif not _PROVIDER_ID.fullmatch(provider):
            problems["provider"] = f"{provider[:40]!r} is not a provider id, e.g. diffusers-tiny"
        values: dict[str, Any] = {"provider": provider}
        readers, keys = _readers(cls._table), side_keys(cls._table)
        for key, raw in overrides.items():
            if key not in readers:
                problems[key[:40] or "''"] = f"unknown override; use {allowed_keys(cls._table)}, e.g. steps=4"
                continue
            text = raw.strip()
            if not text:
                continue
            try:
                value = readers[key](text)
            except ValueError as exc:
                problems[key] = f"{text[:40]!r} {exc}, e.g. {_examples(cls._table)[key]}"
                continue
            if key == SIZE_KEY:
                values["width"], values["height"] = value
            else:
                values[keys[key]] = value
        given = {key for key, raw in overrides.items() if raw.strip()}
        if SIZE_KEY in given and given & {"width", "height"}:
            problems[SIZE_KEY] = "give size or width and height, not both, e.g. size=512x512"
        if problems:
            raise InvalidParams(problems)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise _short_names(InvalidParams.from_validation(exc), SIZE_KEY in given, cls._table) from None

    @classmethod
    def parse(cls, text: str) -> Self:
        """`ID` or `ID:key=value,...` (keys: steps, shift, size=WxH, width, height, strength,
        lora_scale, label).

        Raises InvalidParams naming each bad key (or item) and what to type instead.
        """
        provider, _, rest = text.partition(":")
        overrides: dict[str, str] = {}
        problems: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                problems[item[:40]] = (
                    f"not key=value; use {allowed_keys(cls._table)}, e.g. steps=4,size=512x512"
                )
            elif key in overrides:
                problems[key[:40]] = "given twice; give it once"
            else:
                overrides[key] = value
        try:
            side = cls.from_overrides(provider, overrides)
        except InvalidParams as exc:
            raise InvalidParams({**problems, **exc.fields}) from None
        if problems:
            raise InvalidParams(problems)
        return side

    def spec(self, include_label: bool = True) -> str:
        """The text `parse` reads back as this side: `ID` or `ID:steps=4,shift=2.5,...`.

        Width and height are written as `width=`/`height=` (what older links read). Raises
        InvalidParams for a label `parse` could not read back (a `,` or `;`, outer spaces),
        which only a side built directly (e.g. from a preset file) can have.
        """
        if not _PROVIDER_ID.fullmatch(self.provider):
            raise InvalidParams({"provider": f"{self.provider[:40]!r} is not a provider id"})
        short = _short_names_of(self._table)
        pairs = [(short[name], _spec_text(value)) for name, value in self.overrides().items()]
        if include_label and self.label:
            if self.label != self.label.strip() or any(sep in self.label for sep in _SEPARATORS):
                problem = f"{self.label[:40]!r} can't be written in a side: drop ',', ';' and outer spaces"
                raise InvalidParams({"label": problem})
            pairs.append(("label", self.label))
        overrides = ",".join(f"{key}={value}" for key, value in pairs)
        return f"{self.provider}:{overrides}" if overrides else self.provider


def side_model(table: Table = TABLE) -> type[SideCore]:
    """The Side model of a settings table: the provider, an optional override per setting a side
    may override, the input overrides and the label."""
    fields: dict[str, Any] = {"provider": (str, Field(description="Provider id from the registry."))}
    for setting in side_settings(table):
        kind = setting.kind
        fields[setting.name] = (kind | None, Field(None, description=f"{setting.label} for this side only."))
    fields["strength"] = (
        float | None,
        Field(None, description="Image-to-image strength for this side only, 0..1; needs an input image."),
    )
    fields["lora_scale"] = (
        float | None,
        Field(
            None, description="The scale of every LoRA (all of them) for this side only, -4..4; needs a LoRA."
        ),
    )
    fields["label"] = (
        str,
        Field("", description="Shown above the side; defaults to provider and overrides."),
    )
    model = create_model("Side", __base__=SideCore, __module__=__name__, __doc__=SideCore.__doc__, **fields)
    model._table = table
    return model


if TYPE_CHECKING:

    class Side(SideCore):
        """The type checker's view of `side_model()` (a test keeps it equal to the table)."""

        provider: str
        num_inference_steps: int | None = None
        shift: float | None = None
        width: int | None = None
        height: int | None = None
        strength: float | None = None
        lora_scale: float | None = None
        label: str = ""

else:
    Side = side_model()


def _spec_text(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _short_names_of(table: Table) -> dict[str, str]:
    return {name: short for short, name in side_keys(table).items()}


def _short_names(error: InvalidParams, sized: bool, table: Table) -> InvalidParams:
    """A Side validation error under the names the person typed (`steps`, `size`, ...)."""
    fields: dict[str, str] = {}
    sizes = {setting.name for setting in side_settings(table) if setting.multiple}
    short = _short_names_of(table)
    for name, problem in error.fields.items():
        key = SIZE_KEY if sized and name in sizes else short.get(name, name)
        fields[key] = f"{fields[key]}; {problem}" if key in fields else problem
    return InvalidParams(fields)


def read_side_fields(
    index: int, provider: Any, steps: Any, shift: Any, size: Any, strength: Any = "", lora_scale: Any = ""
) -> Side:
    """One side from the page's controls (side `index`, from 0); blank overrides stay shared.

    Raises InvalidParams whose keys read `side 1 steps`, `side 2 size`, ...
    """
    overrides = {
        "steps": _control_text(steps),
        "shift": _control_text(shift),
        SIZE_KEY: _control_text(size),
        "strength": _control_text(strength),
        "lora_scale": _control_text(lora_scale),
    }
    try:
        return Side.from_overrides(_control_text(provider), overrides)
    except InvalidParams as exc:
        raise InvalidParams(
            {f"side {index + 1} {key}": problem for key, problem in exc.fields.items()}
        ) from None


def _control_text(value: Any) -> str:
    """A control's value as typed text: None is blank, a whole float (a Number box) has no `.0`."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def set_input_override(values: dict[str, Any], name: str, value: float, *, strict: bool = True) -> None:
    """`strength` or `lora_scale` written into dumped params' image inputs: the input image's
    strength, or every LoRA's scale. With nothing to apply it to (no image, no LoRA) it raises
    InvalidParams, or with `strict=False` (a preset's sides, whose image comes with the run)
    leaves the params as they are."""
    inputs = dict(values.get("inputs") or {})
    if name == "strength":
        if not inputs.get("image"):
            if strict:
                raise InvalidParams({name: "needs an input image: give one under Image input (CLI: --image)"})
            return
        inputs["strength"] = value
    else:
        loras = list(inputs.get("loras") or ())
        if not loras:
            if strict:
                raise InvalidParams({name: "needs a LoRA: add one under Image input > LoRA (CLI: --lora)"})
            return
        inputs["loras"] = [{**dict(lora), "scale": value} for lora in loras]
    values["inputs"] = inputs


def params_for_side(base: GenerationParams, side: Side, *, strict: bool = False) -> GenerationParams:
    """The shared params with this side's overrides, validated like any other input.

    `strict`: a strength or LoRA scale with no input image or LoRA to apply to is an error (a run);
    otherwise it has no effect (a preset's side, whose inputs come with the run).
    """
    overrides = side.overrides()
    if not overrides:
        return base
    try:
        values = {**base.model_dump(), **{k: v for k, v in overrides.items() if k not in INPUT_OVERRIDES}}
        for name in INPUT_OVERRIDES:
            if name in overrides:
                set_input_override(values, name, overrides[name], strict=strict)
        try:
            return type(base).model_validate(values)  # the base's own model (its settings table)
        except ValidationError as exc:
            raise InvalidParams.from_validation(exc) from None
    except InvalidParams as exc:
        raise InvalidParams({f"{side.title()}: {k}": v for k, v in exc.fields.items()}) from None


def check_sides(sides: Sequence[Side]) -> None:
    if not MIN_SIDES <= len(sides) <= MAX_SIDES:
        raise InvalidParams({"sides": f"{len(sides)} sides; a comparison has {MIN_SIDES} to {MAX_SIDES}"})


def params_for_sides(sides: Sequence[Side], base: GenerationParams) -> list[GenerationParams]:
    """Each side's params, every problem raised before any work (2..6 sides, valid overrides, a
    strength or LoRA scale only where there is an image or a LoRA)."""
    check_sides(sides)
    return [params_for_side(base, side, strict=True) for side in sides]


async def run_comparison(
    sides: Sequence[Side],
    base: GenerationParams,
    *,
    keys: KeyRing | None = None,
    progress: SideProgress | None = None,
    cancel: CancelToken | None = None,
    hosted_gate: asyncio.Semaphore | None = None,
) -> list[Outcome]:
    """Every side at once on the same prompt and one concrete seed; outcomes in side order."""
    base = base.with_concrete_seed()
    side_params = params_for_sides(sides, base)
    report = progress or (lambda _index, _update: None)

    def side_progress(index: int) -> Callable[[Progress], None]:
        return lambda update: report(index, update)

    return list(
        await asyncio.gather(
            *(
                generate_one(
                    side.provider,
                    params,
                    keys=keys,
                    progress=side_progress(index),
                    cancel=cancel,
                    hosted_gate=hosted_gate,
                )
                for index, (side, params) in enumerate(zip(sides, side_params, strict=True))
            )
        )
    )
