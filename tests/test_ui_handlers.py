"""Page handlers that need no server."""

from pathlib import Path

from PIL import Image

from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import PARAMETERS_KEY, png_with_chunks
from zimage_ui.params import GenerationParams
from zimage_ui.sweep import GRID_KEY, SweepSpec, parse_axis
from zimage_ui.ui.handlers import keys_changed
from zimage_ui.ui.info_tab import axis_text, on_png, sweep_again, use_readback
from zimage_ui.ui.layout import all_key_names
from zimage_ui.ui.presets_panel import NO_CHANGE_COUNT


def test_a_key_typed_on_the_page_relabels_every_provider_dropdown(monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    names = all_key_names()
    values = ["rp-typed-key" if name == "RUNPOD_API_KEY" else "" for name in names]
    keys, *updates = keys_changed(3)(*values)
    assert keys == {"RUNPOD_API_KEY": "rp-typed-key"}
    assert len(updates) == 3
    labels = dict((pid, label) for label, pid in updates[0]["choices"])
    assert "unavailable" not in labels["runpod"]
    assert "rp-typed-key" not in str(updates)


def test_an_image_from_another_model_keeps_turbos_steps_and_guidance(tmp_path: Path):
    a1111 = (
        "a castle\nSteps: 28, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model: sd_xl_base_1.0"
    )
    png = png_with_chunks(Image.new("RGB", (8, 8)), {PARAMETERS_KEY: a1111})
    assert read_png_settings(png).params["num_inference_steps"] == 28  # the reader stays faithful

    path = tmp_path / "a1111.png"
    path.write_bytes(png)
    state = on_png(str(path))[-1]
    kept = use_readback(state, False)
    assert kept[1] == "a castle" and kept[5] == "1234"
    assert (kept[7], kept[8]) == (8, 0.0)  # steps, guidance: Turbo's
    assert "Kept Turbo's 8 steps and guidance 0 instead of its Steps 28 and CFG scale 7" in kept[0]
    assert kept[-1] == kept[0]  # shown on the PNG info tab too
    theirs = use_readback(state, True)
    assert (theirs[7], theirs[8]) == (28, 7.0) and "Kept" not in theirs[0]


def test_a_sweep_grid_png_sets_the_sweep_up_again(tmp_path: Path):
    prompt = "a fox, at dawn"
    spec = SweepSpec(
        params=GenerationParams(prompt=prompt, seed=9, width=512, height=512),
        provider="diffusers-tiny",
        x=parse_axis("prompt_sr", 'fox, "cat, big"', prompt),
        y=parse_axis("steps", "2-8 (+3)"),
    )
    path = tmp_path / "grid.png"
    path.write_bytes(png_with_chunks(Image.new("RGB", (8, 8)), {GRID_KEY: spec.model_dump_json()}))
    message, *_rest, again, state = on_png(str(path))
    assert "A sweep grid: 6 cells" in message and again["visible"] is True
    out = sweep_again(state)
    assert out[1] == prompt and out[5] == "9"  # the form: prompt ... seed
    assert out[NO_CHANGE_COUNT - 1].selected == "sweep"
    provider, x_kind, x_text, y_kind, y_text = out[NO_CHANGE_COUNT : NO_CHANGE_COUNT + 5]
    assert (provider, x_kind, y_kind) == ("diffusers-tiny", "prompt_sr", "steps")
    assert parse_axis("prompt_sr", x_text, prompt).values == ["fox", "cat, big"]
    assert parse_axis("steps", y_text).values == [2, 5, 8]
    assert axis_text(spec.y) == "2, 5, 8"
