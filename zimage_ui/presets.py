"""Presets: a versioned, shareable document of generation settings, as a file or a link.

A preset is built from `GenerationParams` (plus a provider and optional comparison sides)
and is checked with the same rules. It never carries a key and never says where requests
go: import refuses any field or value that looks like one, and export checks it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from zimage_ui.compare import MAX_SIDES, MIN_SIDES, Side, params_for_side, side_settings
from zimage_ui.errors import InvalidParams, PresetError
from zimage_ui.keyguard import MAX_DEPTH, NO_KEYS, Secrets, is_url, keylike, known_secrets, scrub, smuggled
from zimage_ui.params import GenerationParams, ImageInputs, ProviderOptions, parse_params
from zimage_ui.providers import PROVIDERS

PRESET_SCHEMA = 1
MAX_PRESET_BYTES = 64 * 1024
MAX_NAME_CHARS = 100
# The settings a preset holds: all of the params but where an enhanced prompt came from (a preset
# is what to draw; the PNG keeps the person's own prompt).
PARAM_FIELDS = tuple(name for name in GenerationParams.model_fields if name != "enhanced")

_WANTED = {
    "int": "a whole number", "float": "a number", "string": "text", "bool": "true or false",
    "list": "a list", "model": "an object", "dict": "an object",
}  # fmt: skip
_GOT = {
    "str": "text", "int": "a whole number", "float": "a number", "bool": "true/false",
    "NoneType": "null", "list": "a list", "dict": "an object",
}  # fmt: skip


def _rule(name: str, value: Any) -> Any:
    """Check one value with GenerationParams' own rule for that field."""
    probe = {"prompt": "probe", name: value}
    try:
        GenerationParams.model_validate(probe)
    except ValidationError as exc:
        fields = InvalidParams.from_validation(exc).fields
        raise ValueError(fields.get(name) or next(iter(fields.values()))) from None
    return value


def _like(name: str) -> Any:
    """A preset field with GenerationParams' default and description."""
    source = GenerationParams.model_fields[name]
    if source.is_required():
        return Field(description=source.description)
    if source.default_factory is not None:
        return Field(default_factory=source.default_factory, description=source.description)
    return Field(source.default, description=source.description)


def _known_provider(value: str) -> str:
    if value not in PROVIDERS:
        raise ValueError(f"unknown provider {value!r}; use one of {', '.join(PROVIDERS)}")
    return value


def _short_name(value: str) -> str:
    """A preset's name or a side's label: at most MAX_NAME_CHARS."""
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{len(value)} characters; use {MAX_NAME_CHARS} or fewer")
    return value


class PresetSide(Side):
    """One side of a comparison preset: a registered provider plus optional overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        return _known_provider(value)

    @field_validator(*(setting.name for setting in side_settings()))
    @classmethod
    def _override(cls, value: Any, info: Any) -> Any:
        return value if value is None else _rule(info.field_name, value)

    _label = field_validator("label")(classmethod(lambda cls, value: _short_name(value)))


class Preset(BaseModel):
    """A named set of generation settings: one provider, or 2..6 comparison sides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(
        PRESET_SCHEMA, description=f"Preset format version; this app reads 1..{PRESET_SCHEMA}."
    )
    name: str = Field("", description="Shown in preset lists and used for the team file name.")
    prompt: str = _like("prompt")
    negative_prompt: str = _like("negative_prompt")
    width: int = _like("width")
    height: int = _like("height")
    num_inference_steps: int = _like("num_inference_steps")
    guidance_scale: float = _like("guidance_scale")
    seed: int | None = _like("seed")
    shift: float = _like("shift")
    num_images: int = _like("num_images")
    variety: float = _like("variety")
    output_format: str = _like("output_format")
    provider: str = Field(description="Registered provider id (see `python -m zimage_ui providers`).")
    options: ProviderOptions = Field(
        default_factory=ProviderOptions, description="Switches only some providers have."
    )
    sides: list[PresetSide] | None = Field(
        None, description=f"For a comparison: {MIN_SIDES}..{MAX_SIDES} sides; null for one provider."
    )
    inputs: ImageInputs | None = Field(
        None,
        description="LoRAs (https URLs or hub ids) with their scales, strength, control kind and scale; "
        "the input image, mask and control image only as https URLs. Never a local path: a file is on "
        "one machine (and a shared server must not read a path a preset names).",
    )

    @model_serializer(mode="wrap")
    def _omit_no_inputs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if isinstance(data, dict) and data.get("inputs", 0) is None:
            del data["inputs"]
        return data

    @field_validator("inputs", mode="before")
    @classmethod
    def _lists_as_tuples(cls, value: Any) -> Any:
        """A JSON list of LoRAs is the tuple ImageInputs holds (strict validation wants the type)."""
        if isinstance(value, dict) and isinstance(value.get("loras"), list):
            return {**value, "loras": tuple(value["loras"])}
        return value

    @field_validator("inputs")
    @classmethod
    def _no_local_paths(cls, value: ImageInputs | None) -> ImageInputs | None:
        if value is None or value.empty:
            return None
        local = local_refs(value)
        if local:
            raise ValueError(
                "; ".join(f"{what} {ref!r} is a local path" for what, ref in local) + f": {NO_PATHS}"
            )
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        return _known_provider(value)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, value: int) -> int:
        if not 1 <= value <= PRESET_SCHEMA:
            raise ValueError(f"{value} is not a preset schema this app knows; use 1..{PRESET_SCHEMA}")
        return value

    _name = field_validator("name")(classmethod(lambda cls, value: _short_name(value)))

    @field_validator(*(name for name in PARAM_FIELDS if name not in {"options", "inputs"}))
    @classmethod
    def _same_rules(cls, value: Any, info: Any) -> Any:
        return _rule(info.field_name, value)

    @field_validator("sides")
    @classmethod
    def _side_count(cls, value: list[PresetSide] | None) -> list[PresetSide] | None:
        if value is not None and not MIN_SIDES <= len(value) <= MAX_SIDES:
            raise ValueError(f"{len(value)} sides; a comparison has {MIN_SIDES} to {MAX_SIDES}")
        return value

    @model_validator(mode="after")
    def _whole(self) -> Preset:
        """Cross-field rules, exactly as a run would apply them."""
        base = params_from_preset(self)
        for side in self.sides or []:
            params_for_side(base, side)
        return self


NO_PATHS = (
    "presets carry images only as https URLs and LoRAs as https URLs or hub ids ('owner/name'), never "
    "a file on one machine: give the file with the run instead"
)


def local_refs(inputs: ImageInputs) -> list[tuple[str, str]]:
    """(what, reference) for each input that names a local file: a preset can't carry those."""
    found = [
        (what, ref)
        for what, ref in (
            ("input image", inputs.image),
            ("mask", inputs.mask),
            ("control image", inputs.control_image),
        )
        if ref and not is_url(ref)
    ]
    return found + [("LoRA", lora.ref) for lora in inputs.loras if lora.source == "file"]


def portable_inputs(inputs: ImageInputs | None) -> tuple[ImageInputs | None, list[str]]:
    """The inputs a preset can carry, and one message for each local file left out (and why)."""
    if inputs is None:
        return None, []
    notes = [
        f"{what} {Path(ref).name[:80]!r} left out of the preset: it is a local file; presets carry "
        + ("LoRAs as https URLs or hub ids" if what == "LoRA" else "images as https URLs")
        for what, ref in local_refs(inputs)
    ]
    update: dict[str, Any] = {
        name: None
        for name in ("image", "mask", "control_image")
        if (ref := getattr(inputs, name)) and not is_url(ref)
    }
    if "image" in update and inputs.mask and "mask" not in update:
        update["mask"] = None  # a mask needs its image
        notes.append("mask left out of the preset: its input image is a local file")
    update["loras"] = tuple(lora for lora in inputs.loras if lora.source != "file")
    kept = inputs.model_copy(update=update)
    return (None if kept.empty else ImageInputs.model_validate(kept.model_dump())), notes


def params_from_preset(preset: Preset) -> GenerationParams:
    """The preset's shared settings as validated params (raises InvalidParams)."""
    return parse_params(**{name: getattr(preset, name) for name in PARAM_FIELDS})


def side_runs(preset: Preset) -> list[tuple[str, str, GenerationParams]]:
    """(title, provider, params) for each side; one entry for a single-provider preset."""
    base = params_from_preset(preset)
    if not preset.sides:
        return [(preset.provider, preset.provider, base)]
    return [(side.title(), side.provider, params_for_side(base, side)) for side in preset.sides]


def preset_from_params(
    params: GenerationParams,
    provider: str,
    sides: Sequence[Side] | None = None,
    name: str = "",
    left_out: list[str] | None = None,
) -> Preset:
    """What the page or CLI has now, as a preset (raises PresetError naming each bad field).

    Local files (an uploaded input image, a LoRA file) are left out: `left_out` gets one message
    for each, saying which and why, for the caller to show.
    """
    values: dict[str, Any] = {name_: getattr(params, name_) for name_ in PARAM_FIELDS}
    values["inputs"], notes = portable_inputs(params.inputs)
    if left_out is not None:
        left_out.extend(notes)
    values.update(provider=provider, name=name)
    if sides is not None:
        values["sides"] = [side.model_dump() for side in sides]
    return validate_preset(values, strict=False)


# -- validation, export and import -----------------------------------------------------------


def _message(error: Any) -> str:
    kind = str(error["type"])
    if kind == "extra_forbidden":
        return "unknown field; remove it (check the spelling against an exported preset)"
    if kind == "missing":
        return "missing; every preset needs it"
    if kind.endswith("_type") or kind in {"int_from_float", "model_attributes_type"}:
        wanted = _WANTED.get(kind.removesuffix("_type"), "another type")
        got = type(error["input"]).__name__
        return f"wrong type: expected {wanted}, got {_GOT.get(got, got)}"
    return str(error["msg"]).removeprefix("Value error, ")


_INPUT_REFS = ("image", "mask", "control_image")
_PLAIN_URL = "an input link"  # what the key check sees in place of an input's URL


def _set_input_urls_aside(document: Any, known: Secrets) -> tuple[Any, dict[str, str]]:
    """The document with its input image and LoRA URLs replaced (they are where a file comes from,
    not where requests go), and the problems found in them: a key, or credentials in the URL."""
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, dict):
        return document, {}
    problems: dict[str, str] = {}

    def aside(path: str, value: Any) -> Any:
        if not (isinstance(value, str) and is_url(value) and value.lower().startswith("https://")):
            return value
        origin = next((origin for origin, secret in known if secret in value), None)
        parts = urlsplit(value)
        if origin:
            problems[path] = f"this URL holds {origin}: {NO_KEYS}; remove it"
        elif parts.username or parts.password or any(keylike(name) for name, _ in parse_qsl(parts.query)):
            problems[path] = (
                "this URL carries credentials (a user name, a password or a token): give a plain link"
            )
        return _PLAIN_URL

    masked = {
        name: aside(f"inputs.{name}", value) if name in _INPUT_REFS else value
        for name, value in inputs.items()
    }
    loras = inputs.get("loras")
    if isinstance(loras, (list, tuple)):
        masked["loras"] = [
            {**lora, "ref": aside(f"inputs.loras.{index}.ref", lora.get("ref"))}
            if isinstance(lora, dict)
            else lora
            for index, lora in enumerate(loras)
        ]
    return {**document, "inputs": masked}, problems


def validate_preset(values: Any, *, strict: bool = True, secrets: Iterable[str] = ()) -> Preset:
    """A Preset from a loose document, or PresetError naming every wrong field at once.

    A key or destination found anywhere is the message shown for that field; no message
    repeats a key's value.
    """
    known = known_secrets(secrets)
    checked, problems = _set_input_urls_aside(values, known)
    problems.update(smuggled(checked, known))
    found: dict[str, str] = {}
    try:
        preset = Preset.model_validate(values, strict=strict)
    except ValidationError as exc:
        for error in exc.errors():
            found.setdefault(".".join(str(part) for part in error["loc"]) or "preset", _message(error))
    except InvalidParams as exc:
        found.update(exc.fields)
    else:
        if not problems:
            return preset
    for name, problem in found.items():
        problems.setdefault(scrub(name, known), scrub(problem, known))
    raise PresetError(problems)


def export_preset(preset: Preset, *, secrets: Iterable[str] = ()) -> str:
    """Pretty JSON; checked again so no key or destination can leave in a file."""
    document = preset.model_dump(mode="json")
    if preset.sides is None:
        del document["sides"]
    else:
        document["sides"] = [
            {key: value for key, value in side.items() if value not in (None, "")}
            for side in document["sides"]
        ]
    known = known_secrets(secrets)
    checked, problems = _set_input_urls_aside(document, known)
    problems.update(smuggled(checked, known))
    if problems:
        raise PresetError(problems)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _check_size(size: int) -> None:
    if size > MAX_PRESET_BYTES:
        raise PresetError(
            {"file": f"{size / 1024:.1f} KiB is over the {MAX_PRESET_BYTES // 1024} KiB limit for a preset"}
        )


def _check_yaml_events(data: str) -> None:
    """Refuse aliases and deep nesting from the event stream, before building anything."""
    depth = 0
    for event in yaml.parse(data, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise PresetError({"file": "YAML anchors and aliases are not allowed in a preset"})
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise PresetError({"file": "nested too deep for a preset; flatten it"})
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


TOO_MANY_DIGITS = "a number in it has thousands of digits: no setting takes such a number"


def _parse(data: str | bytes) -> Any:
    _check_size(len(data.encode("utf-8") if isinstance(data, str) else data))
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PresetError({"file": "not UTF-8 text: save the preset as UTF-8 JSON or YAML"}) from None
    if not data.strip():
        raise PresetError({"file": "empty: a preset is a JSON or YAML object with a prompt and a provider"})
    try:
        return json.loads(data)
    except (json.JSONDecodeError, RecursionError) as exc:
        json_problem = f"not valid JSON ({exc})"
    except ValueError:  # an integer of thousands of digits: Python refuses to convert it
        raise PresetError({"file": TOO_MANY_DIGITS}) from None
    try:
        _check_yaml_events(data)
        return yaml.safe_load(data)
    except ValueError:
        raise PresetError({"file": TOO_MANY_DIGITS}) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        yaml_problem = f"not valid YAML ({getattr(exc, 'problem', None) or 'unreadable'}{where})"
    looks_json = data.lstrip().startswith(("{", "["))
    raise PresetError({"file": json_problem if looks_json else yaml_problem})


def import_preset(data: str | bytes, *, secrets: Iterable[str] = ()) -> Preset:
    """A preset from JSON or YAML text, refused whole (PresetError) if anything is wrong.

    `secrets`: keys entered on the page this session, refused like keys set in the environment.
    """
    document = _parse(data)
    if not isinstance(document, dict):
        kind = "nothing" if document is None else f"a {type(document).__name__}"
        raise PresetError({"file": f"holds {kind}; a preset is an object with a prompt and a provider"})
    version = document.get("schema_version", PRESET_SCHEMA)
    if isinstance(version, int) and not isinstance(version, bool) and version > PRESET_SCHEMA:
        raise PresetError(
            {
                "schema_version": f"made by a newer zimage-ui (schema {version}); "
                f"this version reads up to {PRESET_SCHEMA}: update the app"
            }
        )
    return validate_preset(document, strict=True, secrets=secrets)


def read_preset_file(path: Path, *, secrets: Iterable[str] = ()) -> Preset:
    """`import_preset` for a file on disk; the size cap is checked before reading."""
    _check_size(path.stat().st_size)
    return import_preset(path.read_bytes(), secrets=secrets)
