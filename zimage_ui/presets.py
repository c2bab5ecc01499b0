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

from zimage_ui.compare import MAX_SIDES, MIN_SIDES, Side, params_for_side
from zimage_ui.errors import InvalidParams, PresetError
from zimage_ui.keyguard import MAX_DEPTH, known_secrets, scrub, smuggled
from zimage_ui.params import GenerationParams, ImageInputs, ProviderOptions, parse_params
from zimage_ui.providers import PROVIDERS

PRESET_SCHEMA = 1
MAX_PRESET_BYTES = 64 * 1024
MAX_NAME_CHARS = 100
PARAM_FIELDS = tuple(GenerationParams.model_fields)

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


class PresetSide(Side):
    """One side of a comparison preset: a registered provider plus optional overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        return _known_provider(value)

    @field_validator("num_inference_steps", "shift", "width", "height")
    @classmethod
    def _override(cls, value: Any, info: Any) -> Any:
        return value if value is None else _rule(info.field_name, value)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"{len(value)} characters; use {MAX_NAME_CHARS} or fewer")
        return value


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
        description="Not kept in presets: an input image, mask or LoRA names a file on one machine.",
    )

    @model_serializer(mode="wrap")
    def _omit_no_inputs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if isinstance(data, dict) and data.get("inputs", 0) is None:
            del data["inputs"]
        return data

    @field_validator("inputs")
    @classmethod
    def _no_inputs(cls, value: ImageInputs | None) -> None:
        if value is not None and not value.empty:
            raise ValueError(
                "presets don't carry input images, masks or LoRAs (they name files on one machine): "
                "give them with the run instead"
            )
        return None

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

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"{len(value)} characters; use {MAX_NAME_CHARS} or fewer")
        return value

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
    params: GenerationParams, provider: str, sides: Sequence[Side] | None = None, name: str = ""
) -> Preset:
    """What the page or CLI has now, as a preset (raises PresetError naming each bad field)."""
    values: dict[str, Any] = {name_: getattr(params, name_) for name_ in PARAM_FIELDS}
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


def validate_preset(values: Any, *, strict: bool = True, secrets: Iterable[str] = ()) -> Preset:
    """A Preset from a loose document, or PresetError naming every wrong field at once.

    A key or destination found anywhere is the message shown for that field; no message
    repeats a key's value.
    """
    known = known_secrets(secrets)
    problems = smuggled(values, known)
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
    problems = smuggled(document, known_secrets(secrets))
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
    try:
        _check_yaml_events(data)
        return yaml.safe_load(data)
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
