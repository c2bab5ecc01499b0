"""The provider interface: prepare (pure) then run (I/O), plus the values they exchange."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import InvalidParams
from zimage_ui.params import MAX_LOCAL_SEED, MAX_SEED, TURBO_STEPS, GenerationParams
from zimage_ui.redaction import REDACTED as REDACTED  # re-exported for the providers
from zimage_ui.redaction import key_problem, safe_url
from zimage_ui.settings import MAX_SIDE, MAX_STEPS, MIN_SIDE, MIN_STEPS, SIDE_MULTIPLE


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; the UI greys out the rest."""

    size_rule: str
    steps_range: tuple[int, int] | None  # None: the provider picks the steps itself
    shift: bool = False
    negative_prompt: bool = False
    guidance: bool = False
    max_images: int = 1
    cost_reporting: bool = False
    local_gpu: bool = False  # runs on this machine's one GPU: shares one queue
    max_seed: int = MAX_SEED  # the largest seed it takes (the local pipeline: MAX_LOCAL_SEED)
    image_input: bool = False  # takes an input image (image-to-image)
    # which input image references it takes: "file" (a local file, read here) and/or "url" (https)
    image_sources: tuple[str, ...] = ("file", "url")
    mask_input: bool = False  # takes an inpainting mask too
    lora: bool = False  # applies LoRAs
    # which LoRA references it takes: "file" (a local .safetensors, read here), "url" (https) and/or
    # "id" (a model id: a hub repo for the local model, the provider's own LoRA model id for Scenario)
    lora_sources: tuple[str, ...] = ("file",)
    control_input: bool = False  # takes a ControlNet control image
    control_kinds: tuple[str, ...] = ()  # which kinds of control image (params.CONTROL_KINDS)
    variety: bool = False  # adds seeded noise to the prompt embeddings (`params.variety`)


# The model's steps range (the Steps setting's): what a provider that takes any steps allows.
MODEL_STEPS = (MIN_STEPS, MAX_STEPS)
# A server running the whole Z-Image pipeline (ComfyUI, an OpenAI-compatible engine, the local
# diffusers pipeline) takes every text-to-image setting; each adds its inputs with `replace`.
FULL_PIPELINE = Capabilities(
    size_rule=f"WxH, multiples of {SIDE_MULTIPLE} in {MIN_SIDE}..{MAX_SIDE}",
    steps_range=MODEL_STEPS,
    shift=True,
    negative_prompt=True,
    guidance=True,
    max_images=4,
)


def is_url(ref: str) -> bool:
    """An input reference that is an https URL (params allow no other scheme), not a local path."""
    return ref.lower().startswith("https://")


LORA_SOURCE_WORDS = {"file": "a local .safetensors file", "url": "an https URL", "id": "a model id"}
LORA_SOURCE_HINTS = {
    "file": "it can't read a local file; give {takes}, or use the local model for local LoRA files",
    "url": "it takes no LoRA URL; give {takes}",
    "id": "it doesn't know that model id; give {takes}",
}


def refuse_inputs(params: GenerationParams, capabilities: Capabilities, label: str) -> None:
    """An input image, mask or LoRA the provider can't take is refused, never silently dropped."""
    problems: dict[str, str] = {}
    image = params.image
    if image and not capabilities.image_input:
        problems["image"] = f"{label} takes no input image: text-to-image only"
    elif image and not is_url(image) and "file" not in capabilities.image_sources:
        problems["image"] = (
            f"{label} needs an https URL for the input image: it can't receive an uploaded or local "
            "file; put the image at a public https URL and give that, or use the local model"
        )
    elif image and is_url(image) and "url" not in capabilities.image_sources:
        problems["image"] = f"{label} takes the input image as a file, not a URL: download it, give its path"
    if params.mask and capabilities.image_input and not capabilities.mask_input:
        problems["mask"] = f"{label} takes no mask (no inpainting): use the local model to inpaint"
    if params.loras and not capabilities.lora:
        only = " (text-to-image only)" if not capabilities.image_input else ""
        problems["loras"] = f"{label} takes no LoRA{only}: use the local model for LoRAs"
    elif params.loras:
        taken = capabilities.lora_sources
        refused = [lora for lora in params.loras if lora.source not in taken]
        if refused:
            problems["loras"] = f"{label} can't take the LoRA {refused[0].ref[:80]!r}: " + LORA_SOURCE_HINTS[
                refused[0].source
            ].format(takes=" or ".join(LORA_SOURCE_WORDS[source] for source in taken))
    control = params.control_image
    if control and not capabilities.control_input and capabilities.local_gpu:
        problems["control_image"] = (
            f"{label} has no ControlNet set up: set ZIMAGE_CONTROLNET to the "
            "Z-Image-Turbo-Fun-Controlnet-Union .safetensors file and restart, or use diffusers-tiny"
        )
    elif control and not capabilities.control_input:
        problems["control_image"] = f"{label} takes no control image (no ControlNet): use the local model"
    elif control and params.control_kind not in capabilities.control_kinds:
        problems["control_kind"] = (
            f"{label} takes {', '.join(capabilities.control_kinds)} control images, not {params.control_kind}"
        )
    elif control and not is_url(control) and "file" not in capabilities.image_sources:
        problems["control_image"] = f"{label} needs an https URL for the control image, not a file"
    if problems:
        raise InvalidParams(problems)


def variety_taken(variety: float, capabilities: Capabilities, label: str) -> None:
    """Refuse seed variety where it can't be applied: the image would not be the one its PNG says
    (a hosted API takes no prompt embeddings)."""
    if variety and not capabilities.variety:
        raise InvalidParams(
            {"variety": f"{label} takes no seed variety (the local model's): set Variety to 0 for {label}"}
        )


def seed_within(seed: int, capabilities: Capabilities, label: str) -> None:
    """Refuse a seed above the provider's top (one read from an A1111 image, say): a different
    seed would make a different image, so it is never clamped."""
    if seed > capabilities.max_seed:
        raise InvalidParams(
            {
                "seed": f"{seed} is above {capabilities.max_seed}, the largest seed {label} takes: use "
                f"0..{capabilities.max_seed}, or the local model, which takes seeds up to {MAX_LOCAL_SEED}"
            }
        )


@dataclass(frozen=True)
class Availability:
    usable: bool
    reason: str = ""  # why not, and what to do


@dataclass(frozen=True)
class SentValues:
    """The values a provider really receives, after snapping and clamping."""

    width: int
    height: int
    steps: int | None  # None: "provider default"
    seed: int
    shift: float | None = None
    # The guidance the model got, in diffusers' convention (0: none); None: the provider has no
    # guidance setting, so none was sent and the PNG states none.
    guidance: float | None = None
    # The sampler and schedule the engine ran, in its own words, where it says ("": Z-Image's
    # flow-matching Euler on even steps, which every provider but a ComfyUI graph runs)
    sampler: str = ""
    schedule: str = ""
    negative_sent: bool = False  # the negative prompt reached the model (a field it has, and used)
    # The steps a provider that takes no steps value runs. EvoLink's and RunPod's docs give neither
    # a steps field nor a count: they serve Z-Image-Turbo, whose model card gives 8 network passes.
    default_steps: int = TURBO_STEPS
    strength: float | None = None  # image-to-image: how much of the input image was redrawn
    # LoRAs applied: (name, scale, short file hash); known once the run has read the files
    loras: tuple[tuple[str, float, str], ...] = ()
    control: tuple[str, float] | None = None  # ControlNet: (kind, scale) of the control image sent
    control_model: str = ""  # the ControlNet's name where the provider knows it (the local models)
    # fields sent beyond the API's own standard ones: an OpenAI-style engine's extra body fields
    extra_fields: tuple[tuple[str, Any], ...] = ()

    @property
    def steps_label(self) -> str:
        return "provider default" if self.steps is None else str(self.steps)

    @property
    def steps_written(self) -> int:
        """The steps for other tools' readers, which need a number: sent, or the provider's default."""
        return self.default_steps if self.steps is None else self.steps

    def record(self) -> dict[str, Any]:
        """What was sent as JSON, one shape everywhere (the PNG's `zimage` record, the API, MCP,
        CLI `--json`): numbers as numbers, `steps` null where the provider picks its own (then
        `steps_default` holds the count it is known to run)."""
        values: dict[str, Any] = {
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "seed": self.seed,
            "shift": self.shift,
            "guidance": self.guidance,
            "negative_prompt": self.negative_sent,
        }
        if self.steps is None:
            values["steps_default"] = self.steps_written
        if self.strength is not None:
            values["strength"] = self.strength
        if self.control is not None:
            kind, scale = self.control
            values["control"] = {"kind": kind, "scale": scale, "model": self.control_model or None}
        if self.extra_fields:
            values["extra_fields"] = dict(self.extra_fields)
        if self.loras:
            values["loras"] = [
                {"name": name, "scale": scale, "hash": digest} for name, scale, digest in self.loras
            ]
        return values


@dataclass(frozen=True)
class PreparedRequest:
    """Exactly what will be sent, with notes on anything adjusted. Holds no secret."""

    provider: str
    params: GenerationParams  # seed always concrete
    sent: SentValues
    method: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # display copy: secrets redacted
    notes: tuple[str, ...] = ()

    def display(self) -> dict[str, Any]:
        """A JSON-able view for the "What was sent" panel."""
        return {
            "provider": self.provider,
            "request": f"{self.method} {safe_url(self.url)}",
            "headers": self.headers,
            "body": self.body,
            "sent": self.sent.record(),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Cost:
    amount: float
    unit: str  # "USD", "compute units", "tokens"

    def __str__(self) -> str:
        if self.unit == "USD":
            return f"${self.amount:.4f}"
        return f"{self.amount:g} {self.unit}"


@dataclass
class RunResult:
    provider: str
    images: list[Image.Image]
    seed: int
    sent: SentValues
    elapsed_s: float
    queue_s: float | None = None
    run_s: float | None = None
    cost: Cost | None = None
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)
    seeds: list[int] | None = None  # each image's own seed, where the provider makes them known

    def image_seed(self, index: int) -> int | None:
        """The seed image `index` can be made again from alone; None where only the provider knows."""
        if self.seeds is not None:
            return self.seeds[index]
        return self.seed if index == 0 else None


@dataclass(frozen=True)
class Progress:
    fraction: float | None  # 0..1 where known
    message: str
    step: int | None = None
    total: int | None = None
    preview: Image.Image | None = None  # local models: a rough look at the image so far; None: no new one


ProgressFn = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    return None


SERVER_KEYS_ENV = "ZIMAGE_SERVER_KEYS"


def server_keys_shared() -> bool:
    """May page visitors use the keys in the server's environment? `ZIMAGE_SERVER_KEYS=all|none`.

    Unset: yes on a private machine, no on a Hugging Face Space (`SPACE_ID` is set there), so a
    public Space never spends its owner's credits unless the owner says `all`. Anything else
    than `all` or `none` counts as `none`.
    """
    setting = env.raw(SERVER_KEYS_ENV).lower()
    if not setting:
        return not env.is_set("SPACE_ID")
    return setting == "all"


class KeyRing:
    """Keys by their environment variable name: the environment overlaid by session keys."""

    def __init__(self, overrides: Mapping[str, str] | None = None, *, use_env: bool = True) -> None:
        self._overrides = {k: v for k, v in (overrides or {}).items() if v and v.strip()}
        self.use_env = use_env

    @classmethod
    def for_visitor(cls, overrides: Mapping[str, str] | None = None) -> KeyRing:
        """A page visitor's keys: their own, plus the server's where `ZIMAGE_SERVER_KEYS` allows."""
        return cls(overrides, use_env=server_keys_shared())

    def get(self, name: str) -> str | None:
        value = self._overrides.get(name) or (env.key(name) if self.use_env else None)
        return value.strip() if value and value.strip() else None

    def missing(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if not self.get(name)]

    def secrets(self) -> list[str]:
        """Every key value known, so output can be scrubbed of them."""
        return [v for v in self._overrides.values() if v]

    def __repr__(self) -> str:  # never show values
        return f"KeyRing({sorted(self._overrides)})"


class Provider(abc.ABC):
    """One place an image can be made. Subclasses are registered in `providers/__init__`."""

    id: str
    label: str
    capabilities: Capabilities
    key_names: tuple[str, ...] = ()

    def availability(self, keys: KeyRing) -> Availability:
        missing = keys.missing(self.key_names)
        if missing and not keys.use_env:
            return Availability(False, "enter your own key under API keys (this instance shares none)")
        if missing:
            return Availability(False, f"set {' and '.join(missing)} or enter the key on the page")
        for name in self.key_names:
            problem = key_problem(keys.get(name) or "")
            if problem:
                return Availability(False, f"the key in {name} is malformed: {problem}; paste it again")
        return Availability(True)

    def details(self) -> str:
        """A line the page shows under the capabilities (the local model: its speed options)."""
        return ""

    def warm_up(self) -> None:  # noqa: B027 - optional hook, most providers need none
        """Start any slow one-time set-up in the background (no-op for hosted APIs)."""

    def prepare(self, params: GenerationParams) -> PreparedRequest:
        """Pure: map canonical params to what will be sent. The one place a run's seed becomes
        concrete (a random one is drawn here, unless the caller drew it already to show it) and
        is checked against what the provider takes."""
        params = params.with_concrete_seed()
        assert params.seed is not None
        seed_within(params.seed, self.capabilities, self.id)
        variety_taken(params.variety, self.capabilities, self.id)
        return self.prepare_seeded(params)

    @abc.abstractmethod
    def prepare_seeded(self, params: GenerationParams) -> PreparedRequest:
        """Pure: map canonical params (their seed concrete and in range) to what will be sent."""

    @abc.abstractmethod
    async def run(
        self,
        prepared: PreparedRequest,
        *,
        keys: KeyRing,
        progress: ProgressFn = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Do the work; raise a `ProviderError` subclass with a clear message on failure."""
