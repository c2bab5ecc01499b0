"""The "Image input" panel: an input image (upload or https URL), strength, a painted mask, a
ControlNet control image and LoRAs, each greyed out with the reason where a provider can't take it.

Safety on a public instance: a visitor never names a server path. Files arrive only as Gradio
uploads (paths inside Gradio's upload folder, which Gradio itself gives); typed text must be an
https URL (or, for a LoRA, a model id). `typed_ref_problem` and `upload_problem` are the page's
checks; the mask is written by the page itself, from the painted layer.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image
from pydantic import ValidationError

from zimage_ui.errors import InvalidParams
from zimage_ui.files import write_atomic
from zimage_ui.params import (
    CONTROL_KINDS,
    DEFAULT_CONTROL_SCALE,
    DEFAULT_STRENGTH,
    MAX_CONTROL_SCALE,
    MAX_LORAS,
    GenerationParams,
    ImageInputs,
)
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import refuse_inputs
from zimage_ui.ui.common import PRIVATE, upload_button
from zimage_ui.ui.mask_editor import mask_editor, mask_from_editor
from zimage_ui.visitor_files import is_upload

GIVE_URL_OR_UPLOAD = "give an https URL or upload the file"
UPLOADED = "upload: "  # a LoRA box's text for an uploaded file
# A typed LoRA model id: a hub repo `owner/name` (optionally `/file.safetensors`) or a provider's
# own id (Scenario's `model_...`); never a path (no leading `/`, `~` or `.`, no `..`, `\` or `:`).
_TYPED_ID = re.compile(r"[A-Za-z0-9][\w-]*|[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*){1,2}")
_PROBE_FILE, _PROBE_URL = "upload.png", "https://images.example.invalid/input.png"
_PROBE_LORA = {"file": "upload.safetensors", "url": "https://loras.example.invalid/a.safetensors"}
_PROBE_LORA["id"] = "owner/lora"
_LORA_WORDS = {"file": "file", "url": "URL", "id": "model id"}


def upload_folder() -> Path:
    return Path(gr.utils.get_upload_folder()).resolve()


def upload_problem(path: str, what: str) -> str | None:
    """Why a file value is refused: it must be a Gradio upload (inside Gradio's upload folder)."""
    return (
        None if is_upload(path, [upload_folder()]) else f"the {what} is not an upload: {GIVE_URL_OR_UPLOAD}"
    )


def typed_ref_problem(text: str, what: str, *, model_id: bool = False) -> str | None:
    """Why typed text is refused: only an https URL (or, with `model_id`, a model id) is taken,
    never something that names a file on the server."""
    if text.lower().startswith("https://"):
        return None
    looks_like_path = text.lower().endswith(".safetensors") and text.count("/") != 2
    if model_id and not looks_like_path and ".." not in text and _TYPED_ID.fullmatch(text):
        return None
    if model_id:
        return f"{text[:80]!r} is not an https URL or a model id: {GIVE_URL_OR_UPLOAD}"
    return f"{text[:80]!r} is not an https URL: {GIVE_URL_OR_UPLOAD}"


def _chosen(upload: str | None, typed: str | None, what: str, problems: dict[str, str]) -> str | None:
    """An upload or a typed URL (not both): the reference the params get."""
    typed = (typed or "").strip()
    if upload and typed:
        problems[what] = f"both an upload and a URL were given for the {what}: keep one"
    elif upload:
        problem = upload_problem(upload, what)
        if problem:
            problems[what] = problem
        return upload
    elif typed:
        problem = typed_ref_problem(typed, what)
        if problem:
            problems[what] = problem
        return typed
    return None


def save_mask(mask: Image.Image, size: tuple[int, int] | None) -> str:
    """The mask as a PNG in Gradio's upload folder, at the input image's size; named by its
    contents, so painting the same mask again writes no new file."""
    if size is not None and mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    data = buffer.getvalue()
    folder = upload_folder() / "zimage-masks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.exists():
        write_atomic(path, data)
    return str(path)


def _image_size(path: str | None) -> tuple[int, int] | None:
    if not path or path.lower().startswith("https://"):
        return None
    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return None


def input_reasons(provider_id: str) -> dict[str, str]:
    """What this provider can't take, by control, in refuse_inputs' own words (probed with it)."""
    caps = get_provider(provider_id).capabilities
    image_ok = _PROBE_FILE if "file" in caps.image_sources else _PROBE_URL
    kind = caps.control_kinds[0] if caps.control_kinds else CONTROL_KINDS[0]
    probes: dict[str, dict[str, Any]] = {
        "image": {"image": _PROBE_FILE},
        "image_url": {"image": _PROBE_URL},
        "mask": {"image": image_ok, "mask": _PROBE_FILE},
        "control_image": {"control_image": _PROBE_FILE, "control_kind": kind},
        "control_url": {"control_image": _PROBE_URL, "control_kind": kind},
        **{f"lora_{source}": {"loras": [{"ref": ref}]} for source, ref in _PROBE_LORA.items()},
    }
    reasons: dict[str, str] = {}
    for control, inputs in probes.items():
        params = GenerationParams(prompt="probe", width=256, height=256, inputs=ImageInputs(**inputs))
        try:
            refuse_inputs(params, caps, provider_id)
        except InvalidParams as exc:
            reasons[control] = _plain(next(iter(exc.fields.values())))
    return reasons


def _plain(reason: str) -> str:
    """A reason without the probe's made-up reference: "can't take a LoRA URL: ..."."""
    for source, ref in _PROBE_LORA.items():
        reason = reason.replace(f"the LoRA {ref!r}", f"a LoRA {_LORA_WORDS[source]}")
    return reason


@dataclass
class LoraRow:
    """One LoRA: typed (an https URL or a model id) or uploaded; the box shows `upload: NAME` for
    an upload, so clearing or retyping it drops the upload."""

    ref: gr.Textbox
    file: gr.UploadButton
    scale: gr.Slider

    def on_upload(self, data: Any) -> dict[Any, Any]:
        path = data[self.file]
        return {self.ref: f"{UPLOADED}{Path(path).name}" if path else ""}

    def chosen(self, data: Any) -> tuple[str | None, str | None]:
        """(the reference, or None; the problem, or None)."""
        typed, upload = (data[self.ref] or "").strip(), data[self.file]
        if not typed:
            return None, None
        if not typed.startswith(UPLOADED):
            return typed, typed_ref_problem(typed, "LoRA", model_id=True)
        if not upload or typed != f"{UPLOADED}{Path(upload).name}":
            return None, "the upload is gone: upload the file again"
        return upload, upload_problem(upload, "LoRA file")


API_INPUT_DOCS = {
    "image": "An input image for image-to-image, uploaded (gradio_client: handle_file(path)); or none.",
    "image_url": "Or the input image as an https URL (never a server path).",
    "strength": f"How much of the input image is redrawn, 0..1 (default {DEFAULT_STRENGTH}); "
    "used only with an image.",
    "loras": "LoRAs, separated by ';', each an https URL or a model id and an optional scale "
    "(-4..4, default 1), e.g. 'owner/ink-wash 0.8; https://host/style.safetensors'.",
}


def parse_lora_text(text: str) -> list[dict[str, Any]]:
    """`REF [SCALE]; ...` -> LoRA dicts; every ref must be an https URL or a model id."""
    loras, problems = [], {}
    for number, item in enumerate(filter(None, (part.strip() for part in text.split(";"))), start=1):
        ref, _, scale_text = item.rpartition(" ") if " " in item else (item, "", "")
        ref = ref.strip()
        try:
            scale = float(scale_text) if scale_text else 1.0
        except ValueError:
            ref, scale = item, 1.0
        if problem := typed_ref_problem(ref, "LoRA", model_id=True):
            problems[f"LoRA {number}"] = problem
        loras.append({"ref": ref, "scale": scale})
    if problems:
        raise InvalidParams(problems)
    return loras


def api_image_inputs(
    image: str | None, image_url: str, strength: float | None, loras: str
) -> ImageInputs | None:
    """The endpoints' image inputs, checked like the page's (uploads and https URLs only)."""
    problems: dict[str, str] = {}
    chosen = _chosen(image, image_url, "image", problems)
    if problems:
        raise InvalidParams(problems)
    values: dict[str, Any] = {"loras": parse_lora_text(loras or "")}
    if chosen:
        values |= {"image": chosen, "strength": DEFAULT_STRENGTH if strength is None else float(strength)}
    if not chosen and not values["loras"]:
        return None
    try:
        return ImageInputs.model_validate(values)
    except ValidationError as exc:  # named by field (loras.0.scale), without pydantic's help link
        raise InvalidParams.from_validation(exc) from None


@dataclass
class InputsPanel:
    """The image inputs a run may start from; read into `GenerationParams.inputs` by the form."""

    accordion: gr.Accordion
    note: gr.Markdown
    image: gr.Image
    image_url: gr.Textbox
    strength: gr.Slider
    mask: gr.ImageEditor
    mask_box: gr.Column  # the editor can't be greyed out: it is hidden, and `mask_off` says why
    mask_off: gr.Markdown
    control_image: gr.Image
    control_url: gr.Textbox
    control_kind: gr.Dropdown
    control_scale: gr.Slider
    loras: list[LoraRow]

    def components(self) -> list[Any]:
        rows = [c for row in self.loras for c in (row.ref, row.file, row.scale)]
        return [
            self.image,
            self.image_url,
            self.strength,
            self.mask,
            self.control_image,
            self.control_url,
            self.control_kind,
            self.control_scale,
            *rows,
        ]

    def wire(self) -> None:
        # The mask is painted on the input image: an upload becomes the editor's background.
        self.image.change(self.on_image, {self.image}, [self.mask], **PRIVATE)
        for row in self.loras:
            row.file.upload(row.on_upload, {row.file}, [row.ref], **PRIVATE)

    def show_chips(self, chips: list[gr.Button]) -> None:
        """The chips by the Run buttons show while an input image is set; one click clears it."""
        self._chips = chips
        gr.on(
            [self.image.change, self.image_url.change],
            self.on_chips,
            {self.image, self.image_url},
            chips,
            **PRIVATE,
        )
        for chip in chips:
            chip.click(
                lambda: {self.image: None, self.image_url: ""}, None, [self.image, self.image_url], **PRIVATE
            )

    def on_chips(self, data: Any) -> dict[Any, Any]:
        active = bool(data[self.image] or (data[self.image_url] or "").strip())
        return {chip: gr.update(visible=active) for chip in self._chips}

    def on_image(self, data: Any) -> dict[Any, Any]:
        path = data[self.image]
        if not path:
            return {self.mask: None}
        return {self.mask: {"background": path, "layers": [], "composite": path}}

    def read(self, data: Any) -> ImageInputs | None:
        """The panel as image inputs (None: nothing given); InvalidParams names each problem."""
        problems: dict[str, str] = {}
        image = _chosen(data[self.image], data[self.image_url], "image", problems)
        control = _chosen(data[self.control_image], data[self.control_url], "control image", problems)
        values: dict[str, Any] = {}
        if image:
            values |= {"image": image, "strength": float(data[self.strength])}
            painted = mask_from_editor(data[self.mask])
            if painted is not None and "image" not in problems:
                values["mask"] = save_mask(painted, _image_size(image))
        if control:
            values |= {
                "control_image": control,
                "control_kind": data[self.control_kind] or CONTROL_KINDS[0],
                "control_scale": float(data[self.control_scale]),
            }
        loras = []
        for number, row in enumerate(self.loras, start=1):
            ref, problem = row.chosen(data)
            if problem:
                problems[f"LoRA {number}"] = problem
            elif ref:
                loras.append({"ref": ref, "scale": float(data[row.scale])})
        if loras:
            values["loras"] = loras
        if problems:
            raise InvalidParams(problems)
        if not values:
            return None
        try:
            return ImageInputs.model_validate(values)
        except ValidationError as exc:  # named by field, without pydantic's help link
            raise InvalidParams.from_validation(exc) from None

    def fill(self, inputs: ImageInputs | None) -> dict[Any, Any]:
        """Updates that show these inputs (a preset's URLs, ids and scales); uploads are cleared."""
        if inputs is None:
            return {}
        updates: dict[Any, Any] = {
            self.image: None,
            self.image_url: inputs.image or "",
            self.strength: inputs.strength if inputs.strength is not None else DEFAULT_STRENGTH,
            self.mask: None,
            self.control_image: None,
            self.control_url: inputs.control_image or "",
            self.control_kind: inputs.control_kind,
            self.control_scale: inputs.effective_control_scale or DEFAULT_CONTROL_SCALE,
        }
        for index, row in enumerate(self.loras):
            lora = inputs.loras[index] if index < len(inputs.loras) else None
            updates |= {
                row.ref: lora.ref if lora else "",
                row.file: None,
                row.scale: lora.scale if lora else 1.0,
            }
        return {**updates, self.accordion: gr.Accordion(open=True)}

    def for_provider(self, provider_id: str) -> dict[Any, Any]:
        """Each control usable or greyed out for this provider. Each reason (refuse_inputs' own
        words) is said once, in the panel's note; a greyed control says only "not on X"."""
        reasons = input_reasons(provider_id)
        caps = get_provider(provider_id).capabilities
        refused = f"not on {provider_id} (see above)"

        def state(*names: str, ok_info: str | None = None) -> Any:
            why = any(name in reasons for name in names)
            return gr.update(interactive=not why, info=refused if why else ok_info)

        def image_state(name: str, label: str) -> Any:
            why = reasons.get(name)
            return gr.update(
                interactive=why is None, label=f"{label} (not on {provider_id})" if why else label
            )

        words = {"url": "an https URL", "id": "a model id", "file": "an upload (.safetensors)"}
        lora_text = [source for source in ("url", "id") if f"lora_{source}" not in reasons]
        taken = [words[source] for source in (*lora_text, "file") if f"lora_{source}" not in reasons]
        lora_text_info = " or ".join(taken)
        updates: dict[Any, Any] = {
            self.image: image_state("image", "Input image"),
            self.image_url: state("image_url", ok_info="an https URL, instead of an upload"),
            self.strength: state("image", "image_url", ok_info="how much of the input image is redrawn"),
            self.mask_box: gr.update(visible="mask" not in reasons),
            self.mask_off: gr.update(visible="mask" in reasons, value=f"**Mask**: {refused}"),
            self.control_image: image_state("control_image", "Control image"),
            self.control_url: state("control_url", ok_info="an https URL, instead of an upload"),
            self.control_kind: gr.update(
                interactive="control_image" not in reasons or "control_url" not in reasons,
                choices=list(caps.control_kinds or CONTROL_KINDS),
            ),
            self.control_scale: state("control_image", "control_url", ok_info="how strongly it steers"),
        }
        for row in self.loras:
            updates |= {
                row.ref: gr.update(
                    interactive=bool(lora_text) or "lora_file" not in reasons,
                    info=lora_text_info or refused,
                ),
                row.file: gr.update(interactive="lora_file" not in reasons),
                row.scale: gr.update(
                    interactive=caps.lora,
                    info=f"not on {provider_id}" if not caps.lora else "how strongly it applies, -4..4",
                ),
            }
        grouped: dict[str, list[str]] = {}  # one line per reason, naming every control it covers
        for key, what in _NOTE_ITEMS:
            if key in reasons:
                grouped.setdefault(reasons[key], []).append(what)
        note = [f"- **{', '.join(whats)}**: {reason}" for reason, whats in grouped.items()]
        header = f"**Not taken by {provider_id}:**\n" if note else f"{provider_id} takes every input here."
        updates[self.note] = header + "\n".join(note)
        return updates

    def outputs(self) -> list[Any]:
        return [self.accordion, self.note, *self.components()]

    def hints(self) -> list[Any]:
        """What `for_provider` updates."""
        return [
            self.note,
            self.mask_box,
            self.mask_off,
            *(c for c in self.components() if c is not self.mask),
        ]


_NOTE_ITEMS = (
    ("image", "Input image upload"),
    ("image_url", "Input image URL"),
    ("mask", "Mask"),
    ("control_image", "Control image upload"),
    ("control_url", "Control image URL"),
    ("lora_file", "LoRA file"),
    ("lora_url", "LoRA URL"),
    ("lora_id", "LoRA model id"),
)


def build_inputs_panel() -> InputsPanel:
    with gr.Accordion("Image input", open=False, elem_id="image-input") as accordion:
        note = gr.Markdown(elem_id="inputs-note")
        image = gr.Image(
            label="Input image",
            type="filepath",
            sources=["upload", "clipboard"],
            height=220,
            elem_id="input-image",
        )
        # The mask editor takes the panel's whole width, under the image: side by side with it, it
        # was 135 px wide, zoomed to 26%, its toolbar over the picture.
        with gr.Column() as mask_box:
            mask = mask_editor(
                label="Mask",
                type="filepath",
                image_mode="RGBA",
                sources=[],
                transforms=[],
                layers=gr.LayerOptions(allow_additional_layers=False, layers=["Mask"]),
                brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed"),
                eraser=gr.Eraser(),
                format="png",
                height=420,
                placeholder="Upload an input image, then paint here: white = redraw",
                elem_id="input-mask",
            )
            gr.Markdown(
                "Paint white where the image should be redrawn; the rest is kept. Nothing "
                "painted: all of it is redrawn, at the strength below."
            )
        mask_off = gr.Markdown(visible=False, elem_id="input-mask-off")
        image_url = gr.Textbox(
            label="Input image URL", placeholder="https://…", max_lines=1, elem_id="input-image-url"
        )
        strength = gr.Slider(
            label="Strength",
            minimum=0.0,
            maximum=1.0,
            step=0.05,
            value=DEFAULT_STRENGTH,
            info="how much of the input image is redrawn",
            elem_id="input-strength",
        )
        with gr.Accordion("ControlNet", open=False), gr.Row():
            control_image = gr.Image(
                label="Control image",
                type="filepath",
                sources=["upload"],
                height=180,
                elem_id="control-image",
            )
            with gr.Column():
                control_url = gr.Textbox(
                    label="Control image URL", placeholder="https://…", max_lines=1, elem_id="control-url"
                )
                control_kind = gr.Dropdown(
                    label="Control type",
                    choices=list(CONTROL_KINDS),
                    value=CONTROL_KINDS[0],
                    elem_id="control-kind",
                )
                control_scale = gr.Slider(
                    label="Control scale",
                    minimum=0.0,
                    maximum=MAX_CONTROL_SCALE,
                    step=0.05,
                    value=DEFAULT_CONTROL_SCALE,
                    elem_id="control-scale",
                )
        with gr.Accordion("LoRA", open=False):
            loras = []
            for number in range(1, MAX_LORAS + 1):
                with gr.Group():
                    with gr.Row(equal_height=True):
                        ref = gr.Textbox(
                            label=f"LoRA {number}",
                            placeholder="https URL or model id (owner/name), or upload",
                            max_lines=1,
                            scale=4,
                            min_width=160,
                            elem_id=f"lora-{number}-ref",
                        )
                        file = upload_button(
                            "Upload",
                            file_types=[".safetensors"],
                            file_count="single",
                            size="sm",
                            scale=1,
                            min_width=80,
                            elem_id=f"lora-{number}-file",
                        )
                    scale = gr.Slider(
                        label="Scale",
                        minimum=-4.0,
                        maximum=4.0,
                        step=0.05,
                        value=1.0,
                        elem_id=f"lora-{number}-scale",
                    )
                loras.append(LoraRow(ref, file, scale))
    return InputsPanel(
        accordion,
        note,
        image,
        image_url,
        strength,
        mask,
        mask_box,
        mask_off,
        control_image,
        control_url,
        control_kind,
        control_scale,
        loras,
    )
