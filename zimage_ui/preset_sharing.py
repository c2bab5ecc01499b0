"""Carrying presets around: share links (a URL query) and a team folder of preset files.

Both go through the same checks as preset files: values validated with the parameter
rules, and nothing that looks like a key or a destination accepted or written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from zimage_ui.compare import Side
from zimage_ui.errors import InvalidParams
from zimage_ui.files import create_atomic
from zimage_ui.keyguard import known_secrets, scrub
from zimage_ui.params import ImageInputs
from zimage_ui.presets import (
    Preset,
    PresetError,
    export_preset,
    read_preset_file,
    validate_preset,
)
from zimage_ui.providers import default_provider_id
from zimage_ui.settings import TABLE

# The settings' place in a link (the link format's order, kept as links are compared as text); a
# setting added to the table comes after them.
_LINK_ORDER = ("prompt", "provider", "seed", "steps", "width", "height", "shift", "guidance")
_SETTING_NAMES = TABLE.short_to_name()
# query name -> preset field, in link order (prompt and provider always; the rest when not default)
QUERY_FIELDS = {
    **{short: _SETTING_NAMES.get(short, short) for short in _LINK_ORDER},
    **{short: name for short, name in _SETTING_NAMES.items() if short not in _LINK_ORDER},
    "format": "output_format",
    "prompt_expansion": "options.prompt_expansion",
    "safety_checker": "options.safety_checker",
    "image": "inputs.image",
    "strength": "inputs.strength",
    "mask": "inputs.mask",
    "control_image": "inputs.control_image",
    "control_kind": "inputs.control_kind",
    "control_scale": "inputs.control_scale",
}
LORAS_QUERY = "loras"  # `REF:SCALE;REF:SCALE` (the scale after the last colon, as the CLI reads it)


@dataclass(frozen=True)
class QueryPreset:
    """A preset read from a share link, and the link's parameters that were not used."""

    preset: Preset
    ignored: list[str] = field(default_factory=list)


_QUERY_NAMES = {target: query for query, target in QUERY_FIELDS.items()}
_INT_TARGETS = {setting.name for setting in TABLE if setting.kind is int}
_FLOAT_TARGETS = {*(setting.name for setting in TABLE if setting.kind is float), "strength", "control_scale"}
_BOOL_TEXT = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False}
_TEXT_KEYS = {setting.short for setting in TABLE if setting.kind is str}


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value) if isinstance(value, float) else str(value)


def share_query(preset: Preset, *, secrets: Iterable[str] = ()) -> str:
    """A URL query string for the preset: prompt and provider, then only non-default values.

    Comparison sides travel as `sides=ID[:steps=N,shift=X,width=W,height=H];...` (each
    `Side.spec`); side labels and the preset name stay in preset files.
    """
    export_preset(preset, secrets=secrets)  # the same guard as a file
    defaults = {
        **Preset(prompt="x", provider=preset.provider).model_dump(),
        "inputs": ImageInputs().model_dump(),
    }
    current = {"inputs": defaults["inputs"], **preset.model_dump()}
    pairs: list[tuple[str, str]] = []
    for query, target in QUERY_FIELDS.items():
        group, _, leaf = target.partition(".")
        value = current[group][leaf] if leaf else current[target]
        default = defaults[group][leaf] if leaf else defaults[target]
        if query in {"prompt", "provider"} or value != default:
            pairs.append((query, _query_text(value)))
    if preset.inputs and preset.inputs.loras:
        pairs.append((LORAS_QUERY, ";".join(f"{lora.ref}:{lora.scale:g}" for lora in preset.inputs.loras)))
    if preset.sides:
        pairs.append(("sides", ";".join(side.spec(include_label=False) for side in preset.sides)))
    return urlencode(pairs)


def _from_text(target: str, text: str) -> Any:
    leaf = target.rpartition(".")[2]
    if leaf in _INT_TARGETS:
        if not re.fullmatch(r"\s*[+-]?\d{1,12}\s*", text):
            raise ValueError(f"{text[:40]!r} is not a whole number")
        return int(text)
    if leaf in _FLOAT_TARGETS:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a number") from None
    if target.startswith("options."):
        if text.strip().lower() not in _BOOL_TEXT:
            raise ValueError(f"{text[:40]!r} is not 1 or 0")
        return _BOOL_TEXT[text.strip().lower()]
    return text


def _loras_from_text(text: str) -> list[dict[str, Any]]:
    """`REF:SCALE;REF` -> LoRA documents (no scale: 1); ValueError for a scale that is no number."""
    loras = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        ref, colon, scale = item.rpartition(":")
        if not colon or "/" in scale:  # no scale given (a URL's own colon)
            loras.append({"ref": item, "scale": 1.0})
            continue
        try:
            loras.append({"ref": ref, "scale": float(scale)})
        except ValueError:
            raise ValueError(f"{scale[:40]!r} is not a LoRA scale (REF:SCALE)") from None
    return loras


def _sides_from_text(text: str) -> list[dict[str, Any]]:
    """`ID[:overrides];...` -> side documents for the preset's own checks (InvalidParams if unreadable).

    Each item is read by `Side.parse` (so `size=WxH` and a hand-written `label=` are read too).
    """
    sides, problems = [], {}
    items = [part.strip() for part in text.split(";")]
    for number, item in enumerate(filter(None, items), start=1):
        try:
            sides.append(Side.parse(item).model_dump(exclude_defaults=True))
        except InvalidParams as exc:
            problems.update({f"side {number} {key}": problem for key, problem in exc.fields.items()})
    if problems:
        raise InvalidParams(problems)
    return sides


def preset_from_query(
    query: Mapping[str, str | Sequence[str]], *, secrets: Iterable[str] = ()
) -> QueryPreset:
    """Read a share link's query: missing values take defaults, bad ones raise PresetError.

    Unknown parameters (e.g. Gradio's `__theme`) are not used and are listed in `ignored`.
    """
    values: dict[str, Any] = {}
    ignored: list[str] = []
    problems: dict[str, str] = {}
    for key, raw in query.items():
        text = raw if isinstance(raw, str) else (list(raw)[-1] if raw else "")
        if key not in QUERY_FIELDS and key not in {"sides", LORAS_QUERY}:
            ignored.append(key)
            continue
        if not text.strip() and key not in _TEXT_KEYS:
            continue  # an empty value is a missing one
        try:
            if key == "sides":
                values["sides"] = _sides_from_text(text)
                continue
            if key == LORAS_QUERY:
                values.setdefault("inputs", {})["loras"] = _loras_from_text(text)
                continue
            target = QUERY_FIELDS[key]
            group, _, leaf = target.partition(".")
            if leaf:
                values.setdefault(group, {})[leaf] = _from_text(target, text)
            else:
                values[target] = _from_text(target, text)
        except (ValueError, InvalidParams) as exc:
            problems[key] = str(exc)
    if problems:
        known = known_secrets(secrets)
        raise PresetError({key: scrub(problem, known) for key, problem in problems.items()})
    values.setdefault("provider", default_provider_id())
    try:
        preset = validate_preset(values, secrets=secrets)
    except PresetError as exc:
        renamed: dict[str, str] = {}
        for name, problem in exc.fields.items():
            head = name.split(".")[0]
            key = _QUERY_NAMES.get(name, _QUERY_NAMES.get(head, head))
            key = LORAS_QUERY if name.startswith("inputs.loras") else key
            renamed[key] = f"{renamed[key]}; {problem}" if key in renamed else problem
        raise PresetError(renamed) from None
    return QueryPreset(preset, ignored)


# -- the team folder -------------------------------------------------------------------------

PRESET_SUFFIXES = (".json", ".yaml", ".yml")
_RESERVED_STEMS = {"con", "prn", "aux", "nul", *(f"{kind}{n}" for kind in ("com", "lpt") for n in range(10))}


def list_team_presets(
    folder: Path, *, secrets: Iterable[str] = ()
) -> tuple[dict[str, Preset], list[tuple[str, str]]]:
    """Presets by title (name, else file stem) and (file name, problem) for each file skipped."""
    if not folder.is_dir():
        return {}, [(str(folder), "the team preset folder does not exist: create it, or fix the setting")]
    secrets = list(secrets)
    presets: dict[str, Preset] = {}
    problems: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in PRESET_SUFFIXES:
            continue
        if path.is_symlink() or not path.is_file():
            problems.append((path.name, "not a regular file: skipped"))
            continue
        try:
            preset = read_preset_file(path, secrets=secrets)
        except PresetError as exc:
            problems.append((path.name, str(exc)))
            continue
        except OSError as exc:
            problems.append((path.name, f"could not be read ({exc.strerror or type(exc).__name__})"))
            continue
        title = preset.name or path.stem
        presets[f"{title} ({path.name})" if title in presets else title] = preset
    return presets, problems


def safe_stem(name: str) -> str:
    """A file name stem from a preset name: lowercase ASCII letters, digits and dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-") or "preset"
    return f"preset-{stem}" if stem in _RESERVED_STEMS else stem


def save_team_preset(folder: Path, preset: Preset, *, secrets: Iterable[str] = ()) -> Path:
    """Write the preset as `<safe name>.json` in `folder`, never over an existing file."""
    text = export_preset(preset, secrets=secrets)
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_stem(preset.name)
    for number in range(1, 1000):
        path = folder / (f"{stem}.json" if number == 1 else f"{stem}-{number}.json")
        try:
            create_atomic(path, text)  # whole or not at all, and never over another preset
        except FileExistsError:
            continue
        return path
    raise PresetError({"name": "a thousand presets already use this name: choose another"})
