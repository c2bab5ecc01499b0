"""The one validated set of canonical generation parameters.

Names follow diffusers. Everything that reaches a provider passes through
`GenerationParams` first, so bad input is a clear error before any work starts.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from typing_extensions import Self

from zimage_ui.errors import InvalidParams
from zimage_ui.redaction import safe_url
from zimage_ui.settings import MAX_LOCAL_SEED as MAX_LOCAL_SEED
from zimage_ui.settings import MAX_SEED as MAX_SEED
from zimage_ui.settings import MAX_SIDE as MAX_SIDE
from zimage_ui.settings import MIN_SIDE as MIN_SIDE
from zimage_ui.settings import SIDE_MULTIPLE as SIDE_MULTIPLE
from zimage_ui.settings import TABLE, Setting, Table
from zimage_ui.settings import TURBO_SHIFT as TURBO_SHIFT
from zimage_ui.settings import TURBO_STEPS as TURBO_STEPS

MAX_PROMPT_CHARS = 4000
MODEL_NAME = "Z-Image-Turbo"


class ProviderOptions(BaseModel):
    """Switches only some providers have; each is sent where the API takes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_expansion: bool = Field(
        False, description="Let the provider rewrite the prompt (AIML). Off for fair comparisons."
    )
    safety_checker: bool = Field(True, description="Provider-side safety checker, where offered.")


class Enhancement(BaseModel):
    """Where the prompt came from when an enhancer rewrote it: the person's own prompt and the
    model that rewrote it. The params' `prompt` is the rewrite: what was drawn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    original: str = Field(max_length=MAX_PROMPT_CHARS, description="The person's own prompt.")
    model: str = Field(max_length=200, description="The chat model that rewrote it.")


DEFAULT_STRENGTH = 0.6
DEFAULT_CONTROL_SCALE = 0.75  # diffusers' ZImageControlNetPipeline default
MAX_CONTROL_SCALE = 2.0
# What a control image shows, as the Z-Image-Turbo Fun ControlNet Union names its conditions. The
# image is given already made (an edge map, a depth map, a pose skeleton): no preprocessor runs here.
ControlKind = Literal["canny", "hed", "depth", "pose", "mlsd"]
CONTROL_KINDS: tuple[str, ...] = ("canny", "hed", "depth", "pose", "mlsd")
MAX_LORAS = 4
MAX_REF_CHARS = 2000
# A model id: a hub repo ("owner/name", optionally "/file.safetensors" after it) or a provider's own
# model id (Scenario's "model_..."): letters, digits, "._-" and at most three "/"-separated parts.
_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+){0,2}")
_WEIGHT_FILES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf")
LoraSource = Literal["file", "url", "id"]


def shareable_ref(ref: str) -> str:
    """An image or LoRA reference as it may leave this machine (a PNG, copied code, the run log): an
    https URL without its credentials (a signed URL's `X-Amz-Signature=` and every other query
    value, any `user:password@`), a local file by its name only, never the folder it sits in on
    this server."""
    return safe_url(ref) if ref.lower().startswith("https://") else Path(ref).name


def lora_source(ref: str) -> LoraSource:
    """What a LoRA reference is: an https URL, a local .safetensors file, or a model id (a hub repo
    id, or a provider's model id)."""
    if ref.lower().startswith("https://"):
        return "url"
    hub_file = ref.count("/") == 2 and not ref.startswith(("/", "~", ".")) and not {":", "\\"} & set(ref)
    if ref.lower().endswith(".safetensors") and not hub_file:
        return "file"
    return "id"


def _ref(value: str, what: str) -> str:
    """An input image's reference: an https URL or a local file path (read when the run starts)."""
    value = value.strip()
    if not value:
        raise ValueError(f"the {what} reference is empty: give a file path or an https URL")
    if len(value) > MAX_REF_CHARS:
        raise ValueError(f"the {what} reference has {len(value)} characters; at most {MAX_REF_CHARS}")
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme and scheme != "https":
        raise ValueError(f"{scheme}:// is not read here: give a local file path or an https URL")
    if scheme and not _valid_url(value):
        raise ValueError(f"{value[:80]!r} is not a valid https URL (its host or port can't be read)")
    return value


def _valid_url(url: str) -> bool:
    """An https URL whose host and port can be read (`https://[::1/x` and `https://h:99999/` can't)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return bool(parts.hostname)


class LoraRef(BaseModel):
    """One LoRA and how strongly it applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str = Field(
        description="A .safetensors file (diffusers/peft or kohya format): a local path, an https URL, "
        "or a model id (a Hugging Face repo 'owner/name' or 'owner/name/file.safetensors', or a "
        "provider's LoRA model id such as Scenario's 'model_...')."
    )
    scale: float = Field(1.0, description="How strongly it applies, -4..4 (0: no effect).")

    @field_validator("ref")
    @classmethod
    def _lora_ref(cls, value: str) -> str:
        value = value.strip()
        if len(value) > MAX_REF_CHARS:
            raise ValueError(f"the LoRA reference has {len(value)} characters; at most {MAX_REF_CHARS}")
        if "://" in value:  # a URL: only a hosted provider that fetches it takes one (refuse_inputs)
            scheme = value.split("://", 1)[0].lower()
            if scheme != "https" or not value[len("https://") :].strip("/"):
                raise ValueError(
                    f"{scheme}:// LoRA references are not read: give a local .safetensors path, or an "
                    "https URL for a provider that takes LoRA URLs (inference.sh)"
                )
            return value
        if not value:
            raise ValueError(
                "the LoRA reference is empty: give a .safetensors path, an https URL or a model id"
            )
        if value.lower().endswith(_WEIGHT_FILES):
            raise ValueError(f"{value[:80]!r} is not a .safetensors file: LoRAs are read from those only")
        if lora_source(value) == "id" and not _MODEL_ID.fullmatch(value):
            raise ValueError(
                f"{value[:80]!r} is neither a .safetensors file nor a model id ('owner/name' on the "
                "hub, or a provider's model id): give one of those, or an https URL"
            )
        return value

    @property
    def source(self) -> LoraSource:
        return lora_source(self.ref)

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        if not -4.0 <= value <= 4.0:
            raise ValueError(f"LoRA scale {value} is outside -4..4")
        return value


class ImageInputs(BaseModel):
    """What a generation starts from besides the prompt: an input image (image-to-image), a mask
    (inpainting) and LoRAs. References only: the files are read when the run starts
    (`zimage_ui.image_inputs`), size-checked before any pixel is decoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(
        None, description="Input image for image-to-image: a local file path or an https URL."
    )
    strength: float | None = Field(
        None,
        description=f"How much of the input image is redrawn, 0..1 (default {DEFAULT_STRENGTH} with an "
        "image; 1 ignores it). Fewer steps run at lower strength: steps x strength.",
    )
    mask: str | None = Field(
        None,
        description="Inpainting mask (white: redraw, black: keep), a file path or an https URL, the "
        "input image's size; needs an image.",
    )
    control_image: str | None = Field(
        None,
        description="ControlNet control image (an edge map, depth map or pose skeleton, already made), "
        "a file path or an https URL; not together with an input image.",
    )
    control_kind: ControlKind = Field(
        "canny", description="What the control image shows: " + ", ".join(CONTROL_KINDS) + "."
    )
    control_scale: float | None = Field(
        None,
        description=f"How strongly the control image steers, 0..{MAX_CONTROL_SCALE:g} "
        f"(default {DEFAULT_CONTROL_SCALE}).",
    )
    loras: tuple[LoraRef, ...] = Field((), description=f"LoRAs to apply, at most {MAX_LORAS}.")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else _ref(value, "image")

    @field_validator("mask")
    @classmethod
    def _mask(cls, value: str | None) -> str | None:
        return None if value is None else _ref(value, "mask")

    @field_validator("control_image")
    @classmethod
    def _control_image(cls, value: str | None) -> str | None:
        return None if value is None else _ref(value, "control image")

    @field_validator("control_scale")
    @classmethod
    def _control_scale(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= MAX_CONTROL_SCALE:
            raise ValueError(f"control scale {value} is outside 0..{MAX_CONTROL_SCALE:g}")
        return value

    @field_validator("strength")
    @classmethod
    def _strength(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"strength {value} is outside 0..1")
        return value

    @field_validator("loras")
    @classmethod
    def _loras(cls, value: tuple[LoraRef, ...]) -> tuple[LoraRef, ...]:
        if len(value) > MAX_LORAS:
            raise ValueError(f"{len(value)} LoRAs; at most {MAX_LORAS}")
        return value

    @model_validator(mode="after")
    def _mask_needs_image(self) -> ImageInputs:
        if self.mask is not None and self.image is None:
            raise ValueError("a mask needs an input image: give the image to inpaint too")
        if self.control_image is not None and self.image is not None:
            raise ValueError(
                "a control image and an input image can't be used together: ControlNet draws a new "
                "image guided by the control image; remove one of them"
            )
        return self

    @property
    def effective_control_scale(self) -> float | None:
        """The control scale really used: None without a control image."""
        if self.control_image is None:
            return None
        return DEFAULT_CONTROL_SCALE if self.control_scale is None else self.control_scale

    @property
    def effective_strength(self) -> float | None:
        """The strength really used: None without an input image."""
        if self.image is None:
            return None
        return DEFAULT_STRENGTH if self.strength is None else self.strength

    @property
    def empty(self) -> bool:
        return (
            self.image is None
            and self.mask is None
            and not self.loras
            and self.strength is None
            and self.control_image is None
            and self.control_scale is None
        )


def steps_run(steps: int, strength: float | None) -> int:
    """The network passes an image-to-image run really makes, as diffusers' img2img pipelines count
    them (`get_timesteps`): steps - int(steps - steps * strength); all of them without an image."""
    if strength is None:
        return steps
    start = int(max(steps - min(steps * strength, steps), 0))
    return steps - start


class ParamsCore(BaseModel):
    """What every GenerationParams has besides the settings' fields: the checks that span fields,
    the image-input views and the seed helpers. The fields come from the settings table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    if TYPE_CHECKING:  # fields of every table, used by the methods below
        prompt: str
        width: int
        height: int
        seed: int | None
        num_inference_steps: int
        inputs: ImageInputs | None

    @model_serializer(mode="wrap")
    def _omit_no_inputs(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Without image inputs or an enhanced prompt the params serialise exactly as before."""
        data = handler(self)
        for optional in ("inputs", "enhanced"):  # serialised as before they existed, when unused
            if isinstance(data, dict) and data.get(optional, 0) is None:
                del data[optional]
        return data

    @field_validator("inputs", check_fields=False)
    @classmethod
    def _inputs(cls, value: ImageInputs | None) -> ImageInputs | None:
        return None if value is None or value.empty else value

    @field_validator("prompt", check_fields=False)
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty: describe the image you want")
        if len(value) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"the prompt has {len(value)} characters; shorten it to {MAX_PROMPT_CHARS} or fewer"
            )
        return value

    @field_validator("seed", mode="before", check_fields=False)
    @classmethod
    def _seed(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"the seed must be a whole number in 0..{MAX_SEED}, or empty for random")
        try:
            return int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(  # its first 40 characters: never a whole structure or digit string echoed
                f"{str(value)[:40]!r} is not a whole number: use 0..{MAX_SEED}, or leave empty for random"
            ) from None

    @model_validator(mode="after")
    def _some_step_runs(self) -> Self:
        strength = self.strength
        steps = self.num_inference_steps
        if strength is not None and steps_run(steps, strength) < 1:
            raise ValueError(
                f"strength {strength:g} with {steps} steps runs no step: "
                f"use a strength of at least {1 / steps:.3g}, or more steps"
            )
        return self

    @property
    def image(self) -> str | None:
        return self.inputs.image if self.inputs else None

    @property
    def mask(self) -> str | None:
        return self.inputs.mask if self.inputs else None

    @property
    def strength(self) -> float | None:
        """The image-to-image strength really used (None: text-to-image)."""
        return self.inputs.effective_strength if self.inputs else None

    @property
    def loras(self) -> tuple[LoraRef, ...]:
        return self.inputs.loras if self.inputs else ()

    @property
    def control_image(self) -> str | None:
        return self.inputs.control_image if self.inputs else None

    @property
    def control_kind(self) -> str | None:
        """What the control image shows (None without one)."""
        return self.inputs.control_kind if self.inputs and self.inputs.control_image else None

    @property
    def control_scale(self) -> float | None:
        """The ControlNet scale really used (None: no control image)."""
        return self.inputs.effective_control_scale if self.inputs else None

    @property
    def steps_run(self) -> int:
        """Network passes per image really made (fewer than the steps with an input image)."""
        return steps_run(self.num_inference_steps, self.strength)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def for_image(self, index: int) -> Self:
        """Image `index` of this batch as a run of its own: its seed, one image."""
        assert self.seed is not None, "a batch's seeds come from a concrete seed"
        return self.model_copy(update={"seed": image_seed(self.seed, index), "num_images": 1})

    def with_concrete_seed(self, rng: random.Random | None = None) -> Self:
        """Return a copy whose seed is set: the app draws random seeds itself (1..MAX_SEED).
        The one place a seed becomes concrete: every run, page or API or CLI, passes here."""
        if self.seed is not None:
            return self
        draw = (rng or random.SystemRandom()).randint(1, MAX_SEED)
        return self.model_copy(update={"seed": draw})


def _annotation(setting: Setting) -> Any:
    if setting.name == "seed":
        return int | None
    return setting.kind


def _checked(table: Table) -> Any:
    """One validator for every ranged setting: its range, and its multiple (the sizes), from the table."""

    def check(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
        setting = table[str(info.field_name)]
        if value is None:
            return value
        problem = setting.problem(value)
        if problem:
            raise ValueError(problem)
        if setting.multiple and value % setting.multiple:
            lower = value - value % setting.multiple
            raise ValueError(
                f"{value} is not a multiple of {setting.multiple}; use {lower} or {lower + setting.multiple}"
            )
        return value

    names = [setting.name for setting in table if setting.ranged]
    return field_validator(*names)(check)


def params_model(table: Table = TABLE) -> type[ParamsCore]:
    """The params model of a settings table: a field per setting (type, default, help), each
    range checked, then the output format, the provider options and the image inputs."""
    fields: dict[str, Any] = {
        setting.name: (
            _annotation(setting),
            Field(... if setting.required else setting.default, description=setting.help),
        )
        for setting in table
    }
    fields["output_format"] = (Literal["png", "jpeg", "webp"], Field("png", description="Requested format."))
    fields["options"] = (ProviderOptions, Field(default_factory=ProviderOptions))
    fields["enhanced"] = (
        Enhancement | None,
        Field(None, description="The person's own prompt and the enhancer, when the prompt is a rewrite."),
    )
    fields["inputs"] = (
        ImageInputs | None,
        Field(
            None,
            description="Input image, mask, strength and LoRAs; none: text-to-image (left out of exports).",
        ),
    )
    model = create_model(
        "GenerationParams",
        __base__=ParamsCore,
        __module__=__name__,
        __doc__="Canonical parameters for one Z-Image-Turbo generation (Turbo defaults).",
        __validators__={"_checked": _checked(table)},
        **fields,
    )
    return model


if TYPE_CHECKING:

    class GenerationParams(ParamsCore):
        """The type checker's view of `params_model()` (a test keeps it equal to the table)."""

        prompt: str
        negative_prompt: str = ""
        width: int = 1024
        height: int = 1024
        seed: int | None = None
        num_inference_steps: int = TURBO_STEPS
        guidance_scale: float = 0.0
        shift: float = TURBO_SHIFT
        num_images: int = 1
        variety: float = 0.0
        output_format: Literal["png", "jpeg", "webp"] = "png"
        options: ProviderOptions = ProviderOptions()
        enhanced: Enhancement | None = None
        inputs: ImageInputs | None = None

else:
    GenerationParams = params_model()


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index` of a batch: seed + index, wrapping to 0 past the top of the range
    the seed is in (MAX_SEED, so a batch every provider takes stays so; else MAX_LOCAL_SEED)."""
    top = MAX_SEED if seed <= MAX_SEED else MAX_LOCAL_SEED
    return (seed + index) % (top + 1)


def parse_params(**values: object) -> GenerationParams:
    """Build params from loose input (UI, CLI, presets); raise InvalidParams naming each field."""
    try:
        return GenerationParams.model_validate(values)
    except ValidationError as exc:
        raise InvalidParams.from_validation(exc) from None
