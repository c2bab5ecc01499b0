"""Page handlers that need no server: built in a Blocks context, called with Gradio's input dicts."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import PARAMETERS_KEY, png_with_chunks
from zimage_ui.params import GenerationParams
from zimage_ui.presets import Preset, PresetSide
from zimage_ui.sweep import GRID_KEY, SweepSpec, parse_axis
from zimage_ui.ui.common import SessionState
from zimage_ui.ui.compare_tab import CompareTab, build_compare_tab
from zimage_ui.ui.form import SETTING_NAMES, Form
from zimage_ui.ui.generate_tab import GenerateTab, build_generate_tab
from zimage_ui.ui.info_tab import InfoTab, build_info_tab
from zimage_ui.ui.presets_panel import PresetsPanel, build_presets_panel
from zimage_ui.ui.settings_panel import SettingsPanel, build_keys_panel, build_settings_panel
from zimage_ui.ui.sweep_tab import SweepTab, build_sweep_tab


@dataclass
class Page:
    form: Form
    panel: SettingsPanel
    generate: GenerateTab
    compare: CompareTab
    sweep: SweepTab
    presets: PresetsPanel
    info: InfoTab
    state: SessionState


@pytest.fixture
def page() -> Iterator[Page]:
    with gr.Blocks() as demo:
        panel = build_settings_panel()
        presets = build_presets_panel()
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                generate = build_generate_tab("diffusers-tiny")
            with gr.Tab("Compare", id="compare"):
                compare = build_compare_tab("diffusers-tiny")
            with gr.Tab("Sweep", id="sweep"):
                sweep = build_sweep_tab("diffusers-tiny")
            with gr.Tab("PNG info", id="png-info"):
                info = build_info_tab()
        form = Form(panel.settings, generate.provider, compare.count, compare.sides, tabs)
        state = SessionState()
        presets.wire(demo, form, state.keys)
        info.wire(form, presets, sweep)
        compare.wire(form, state)
        yield Page(form, panel, generate, compare, sweep, presets, info, state)


def test_a_key_typed_on_the_page_relabels_every_provider_dropdown(monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    with gr.Blocks():
        keys = build_keys_panel()
        dropdowns = [gr.Dropdown() for _ in range(3)]
        state = gr.State({})
        keys.wire(state, dropdowns)
    data = {box: ("rp-typed-key" if name == "RUNPOD_API_KEY" else "") for name, box in keys.boxes.items()}
    updates = keys.on_keys(data)
    assert updates[state] == {"RUNPOD_API_KEY": "rp-typed-key"}
    assert all(dropdown in updates for dropdown in dropdowns)
    labels = dict((pid, label) for label, pid in updates[dropdowns[0]]["choices"])
    assert "unavailable" not in labels["runpod"]
    assert "rp-typed-key" not in str([updates[dropdown] for dropdown in dropdowns])


def test_the_shared_settings_are_named_once_in_form_order(page: Page):
    assert SETTING_NAMES[:2] == ("prompt", "negative_prompt") and len(SETTING_NAMES) == 11
    components = page.form.settings.components()
    assert len(set(map(id, components))) == 11
    named = page.form.settings.named({c: index for index, c in enumerate(components)})
    assert list(named.values()) == list(range(11))


def test_a_fill_changes_only_what_the_preset_sets(page: Page):
    preset = Preset(prompt="a kite", provider="diffusers-tiny", seed=5, width=512, height=768)
    updates = page.form.fill(preset)
    s = page.form.settings
    assert updates[s.prompt] == "a kite" and updates[s.seed] == "5" and updates[s.random_seed] is False
    assert (updates[s.width], updates[s.height]) == (512, 768)
    assert page.compare.sides[0].steps not in updates  # no comparison in it: the sides are untouched
    assert updates[page.form.tabs].selected == "generate"
    assert not any(
        isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1
        for value in updates.values()
    )  # no padding with empty updates


def test_a_comparison_preset_fills_exactly_its_sides(page: Page):
    sides = [
        PresetSide(provider="diffusers-tiny", num_inference_steps=2),
        PresetSide(provider="diffusers-tiny"),
    ]
    updates = page.form.fill(Preset(prompt="x", provider="diffusers-tiny", sides=sides))
    first, second, third = page.compare.sides[:3]
    assert updates[first.steps] == "2" and updates[second.steps] == ""
    assert third.provider not in updates
    assert updates[page.form.side_count] == 2 and updates[page.form.tabs].selected == "compare"


def test_reading_the_form_names_each_wrong_field(page: Page):
    s = page.form.settings
    form_values = ["a fox", "", 500, 512, "", True, 8, 0.0, 3.0, 1, 0.0]
    values = dict(zip(s.components(), form_values, strict=True))
    with pytest.raises(gr.Error, match=r"width.*multiple of 16"):
        page.form.read(values)
    assert page.form.read({**values, s.width: 512}).width == 512


def test_a_width_out_of_range_reaches_the_app_which_names_the_field(page: Page):
    """Gradio's own range check would refuse 13 before any handler ran, as a toast naming no field
    and an "Error" badge on whatever was listening; the app's check names the field."""
    s = page.form.settings
    assert (s.width.preprocess(13), s.height.preprocess(5000)) == (13, 5000)
    values = dict(zip(s.components(), ["a fox", "", 13, 512, "", True, 8, 0.0, 3.0, 1, 0.0], strict=True))
    with pytest.raises(gr.Error, match=r"width: 13 is outside 256\.\.2048"):
        page.form.read(values)


def test_an_export_of_a_bad_form_says_why_and_makes_no_file(page: Page):
    s, presets = page.form.settings, page.presets
    data = {
        c: v for c, v in zip(s.components(), ["x", "", 500, 512, "", True, 8, 0.0, 3.0, 1, 0.0], strict=True)
    }
    data |= {page.form.provider: "diffusers-tiny", page.form.side_count: 2, presets.include_sides: False}
    data |= {presets.name: ""} | {c: "" for side in page.compare.sides for c in side.inputs()}
    updates = presets.on_export(data)
    assert "multiple of 16" in updates[presets.status] and presets.exported not in updates
    assert "Give the preset a name first" in presets.on_save({**data, presets.store: {}})[presets.status]


def test_an_image_from_another_model_keeps_turbos_steps_and_guidance(page: Page, tmp_path: Path):
    a1111 = (
        "a castle\nSteps: 28, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model: sd_xl_base_1.0"
    )
    png = png_with_chunks(Image.new("RGB", (8, 8)), {PARAMETERS_KEY: a1111})
    assert read_png_settings(png).params["num_inference_steps"] == 28  # the reader stays faithful

    path = tmp_path / "a1111.png"
    path.write_bytes(png)
    info, s = page.info, page.form.settings
    state = info.on_png({info.file: str(path)})[info.readback]
    kept = info.on_use({info.readback: state, info.theirs: False, info.own: False})
    assert kept[s.prompt] == "a castle" and kept[s.seed] == "1234" and kept[s.random_seed] is False
    assert (kept[s.steps], kept[s.guidance]) == (8, 0.0)  # Turbo's
    message = kept[info.message]
    assert "Kept Turbo's 8 steps and guidance 0 instead of its Steps 28 and CFG scale 7" in message
    assert kept[page.presets.status] == message  # shown in the presets status too
    assert s.shift not in kept  # the image did not say: the form keeps its value
    theirs = info.on_use({info.readback: state, info.theirs: True, info.own: False})
    assert (theirs[s.steps], theirs[s.guidance]) == (28, 6.0) and "Kept" not in theirs[
        info.message
    ]  # CFG 7 - 1


def test_a_sweep_grid_png_sets_the_sweep_up_again(page: Page, tmp_path: Path):
    prompt = "a fox, at dawn"
    spec = SweepSpec(
        params=GenerationParams(prompt=prompt, seed=9, width=512, height=512),
        provider="diffusers-tiny",
        x=parse_axis("prompt_sr", 'fox, "cat, big"', prompt),
        y=parse_axis("steps", "2-8 (+3)"),
    )
    path = tmp_path / "grid.png"
    path.write_bytes(png_with_chunks(Image.new("RGB", (8, 8)), {GRID_KEY: spec.model_dump_json()}))
    info, sweep, s = page.info, page.sweep, page.form.settings
    shown = info.on_png({info.file: str(path)})
    assert "A sweep grid: 6 cells" in shown[info.message] and shown[info.again]["visible"] is True
    out = info.on_sweep_again({info.readback: shown[info.readback]})
    assert out[s.prompt] == prompt and out[s.seed] == "9"
    assert out[page.form.tabs].selected == "sweep"
    assert (out[sweep.provider], out[sweep.x_kind], out[sweep.y_kind]) == (
        "diffusers-tiny",
        "prompt_sr",
        "steps",
    )
    assert parse_axis("prompt_sr", out[sweep.x_values], prompt).values == ["fox", "cat, big"]
    assert parse_axis("steps", out[sweep.y_values]).values == [2, 5, 8]
    assert spec.y.text() == "2, 5, 8"


def test_a_key_typed_on_the_page_is_refused_by_export_link_and_team_save(
    page: Page, monkeypatch, tmp_path: Path
):
    """A key the visitor typed is refused where a preset leaves the page, as a server key is."""
    monkeypatch.setenv("ZIMAGE_PRESETS_DIR", str(tmp_path))
    typed = "typed-visitor-key-0123456789"
    s, presets = page.form.settings, page.presets
    values = [f"a fox {typed}", "", 512, 512, "", True, 8, 0.0, 3.0, 1, 0.0]
    data = dict(zip(s.components(), values, strict=True))
    data |= {page.form.provider: "diffusers-tiny", page.form.side_count: 2, presets.include_sides: False}
    data |= {presets.name: "mine", presets._keys: {"RUNPOD_API_KEY": typed}}
    data |= {c: "" for side in page.compare.sides for c in side.inputs()}
    for updates in (presets.on_export(data), presets.on_link(data), presets.on_team_save(data)):
        assert (
            "Preset refused" in updates[presets.status]
            and "a key entered on the page" in updates[presets.status]
        )
        assert typed not in str(updates)
    assert not list(tmp_path.iterdir()), "nothing reached the team folder"
    assert presets.on_link({**data, presets._keys: {}})[presets.query] != ""  # without the key: a link


@pytest.mark.parametrize(
    ("x_kind", "x_values", "y_kind", "y_values", "said"),
    [
        ("steps", "0, 4", "none", "", "0 steps is outside 1..50"),
        ("steps", "4, 8", "shift", "1, 11", "shift 11.0 is outside 1..10"),
        ("seed", "1, -2", "none", "", "Seed: -2"),
    ],
)
def test_the_cell_count_says_what_the_run_would_refuse_as_values_are_typed(
    x_kind: str, x_values: str, y_kind: str, y_values: str, said: str
) -> None:
    from zimage_ui.ui.sweep_tab import cell_count_text

    text = cell_count_text(x_kind, x_values, y_kind, y_values, "a fox")
    assert text.startswith("⚠") and said in text and "cells" not in text, text
    assert cell_count_text(x_kind, "4, 8", "none", "", "a fox") == "**2 cells** (limit 36)"


def test_team_presets_saved_elsewhere_are_listed_when_the_panel_opens(monkeypatch, tmp_path: Path):
    """The team folder is read each time the presets panel opens: a preset another browser saved
    (here written straight into the folder) appears without a restart, and a pick still there stays."""
    from zimage_ui.preset_sharing import save_team_preset

    monkeypatch.setenv("ZIMAGE_PRESETS_DIR", str(tmp_path))
    save_team_preset(tmp_path, Preset(name="dawn", prompt="a heron at dawn", provider="diffusers-tiny"))
    with gr.Blocks():
        presets = build_presets_panel()
    assert [choice[0] for choice in presets.team.choices] == ["dawn"]
    save_team_preset(tmp_path, Preset(name="dusk", prompt="a heron at dusk", provider="diffusers-tiny"))
    updates = presets.on_team_refresh({presets.team: "dawn"})
    assert updates[presets.team]["choices"] == ["dawn", "dusk"] and updates[presets.team]["value"] == "dawn"
    assert presets.on_team_refresh({presets.team: "gone"})[presets.team]["value"] is None


@dataclass
class WiredGenerate:
    panel: SettingsPanel
    generate: GenerateTab
    state: object

    def data(self, prompt: str, provider: str = "diffusers-tiny") -> dict:
        values = [prompt, "", 256, 256, "", True, 2, 0.0, 3.0, 1, 0.0]
        data = dict(zip(self.panel.settings.components(), values, strict=True))
        state = self.state
        return data | {self.generate.provider: provider, state.keys: {}, state.history: []}  # type: ignore[attr-defined]


@pytest.fixture
def wired() -> WiredGenerate:
    """The Generate tab wired to a settings panel and a session's state, as the page does."""
    from zimage_ui.ui.common import SessionState

    with gr.Blocks() as demo:
        panel = build_settings_panel()
        generate = build_generate_tab("diffusers-tiny")
        state = SessionState()
        form = Form(panel.settings, generate.provider, None, [], None)  # type: ignore[arg-type]
        generate.wire(demo, form, panel, state)
    return WiredGenerate(panel, generate, state)


async def test_an_empty_prompt_is_said_once_in_the_status(wired: WiredGenerate):
    """The status says what is wrong in one sentence: "Check the form" once, the field named."""
    first = await anext(wired.generate.on_generate(wired.data(""), request=None))  # type: ignore[arg-type]
    status = first[wired.generate.status]
    assert status.count("Check the form") == 1 and "prompt" in status, status


async def test_a_failed_run_leaves_the_seed_of_the_images_still_shown(wired: WiredGenerate, monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "none")
    updates = [u async for u in wired.generate.on_generate(wired.data("a fox", "runpod"), request=None)]  # type: ignore[arg-type]
    last = updates[-1]
    assert (
        last[wired.generate.status].startswith("**Failed.**") and "not usable" in last[wired.generate.status]
    )
    assert wired.generate.seed_used not in last and wired.state.last_seed not in last  # type: ignore[attr-defined]


def test_picking_an_image_shows_its_own_seed_for_reuse(wired: WiredGenerate):
    generate, state = wired.generate, wired.state
    picked = gr.SelectData(
        None, {"index": 2, "value": {"image": {}, "caption": "seed 4242"}, "selected": True}
    )
    updates = generate.on_select(picked)
    assert updates[generate.selected] == 2 and updates[generate.seed_used] == "4242"
    assert updates[state.last_seed] == 4242  # type: ignore[attr-defined]
    batch = gr.SelectData(None, {"index": 1, "value": {"caption": "image 2 of the batch"}, "selected": True})
    assert generate.on_select(batch) == {generate.selected: 1}  # no seed of its own: the run's stays


def test_usable_providers_come_first_so_a_typed_filter_picks_one_that_runs(monkeypatch):
    from zimage_ui.providers import availability
    from zimage_ui.providers.base import KeyRing
    from zimage_ui.ui.settings_panel import provider_choices

    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    keys = KeyRing({"RUNPOD_API_KEY": "rp-test-key"})
    usable = {pid for pid, status in availability(keys).items() if status.usable}
    ids = [pid for _label, pid in provider_choices(keys)]
    assert {"diffusers-tiny", "runpod"} <= usable and sorted(ids) == sorted(availability(keys))
    assert ids[: len(usable)] == [pid for pid in ids if pid in usable]  # every usable one first
    typed = [pid for label, pid in provider_choices(keys) if "tiny" in label.lower()]
    assert typed[0] == "diffusers-tiny", typed  # what Enter takes after typing "tiny"


def test_the_provider_summary_follows_keys_typed_on_the_page(wired: WiredGenerate, monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "none")
    generate, summary = wired.generate, wired.panel.capabilities
    data = wired.data("a fox", "runpod")
    assert "runpod is not usable here" in generate.on_provider(data)[summary]
    typed = {**data, wired.state.keys: {"RUNPOD_API_KEY": "rp-typed-key"}}  # type: ignore[attr-defined]
    assert "not usable" not in generate.on_provider(typed)[summary]


@pytest.fixture
def wired_compare():
    """The Compare tab wired to the form and a session's state, as the page does."""
    from zimage_ui.ui.common import SessionState

    with gr.Blocks():
        panel = build_settings_panel()
        generate = build_generate_tab("diffusers-tiny")
        compare = build_compare_tab("diffusers-tiny")
        state = SessionState()
        form = Form(panel.settings, generate.provider, compare.count, compare.sides, None)  # type: ignore[arg-type]
        compare.wire(form, state)
    values = ["a fox", "", 256, 256, "1", False, 2, 0.0, 3.0, 1, 0.0]
    data = dict(zip(panel.settings.components(), values, strict=True))
    data |= {generate.provider: "diffusers-tiny", compare.count: 2, compare.blind: False}
    data |= {state.keys: {}, state.history: []}
    for number, side in enumerate(compare.sides):
        data |= {c: "" for c in side.inputs()} | {side.provider: "diffusers-tiny"}
        data[side.steps] = str(number + 1)
    return compare, data


async def test_a_new_comparison_titles_its_own_sides_from_the_start(wired_compare):
    compare, data = wired_compare
    first, *_running, last = [updates async for updates in compare.on_run(data, request=None)]
    titles = [first[result.title] for result in compare.results[:2]]
    assert titles == ["**1. diffusers-tiny (steps 1)**", "**2. diffusers-tiny (steps 2)**"], titles
    pickers = [label for label, _value in last[compare.left]["choices"]]  # the A/B slider's
    assert pickers == ["1. diffusers-tiny (steps 1)", "2. diffusers-tiny (steps 2)"], pickers


def test_a_vote_reveals_the_names_and_retires_the_vote_prompt(page: Page, monkeypatch):
    monkeypatch.delenv("ZIMAGE_HISTORY_DB", raising=False)  # votes stay in the browser
    compare = page.compare
    round_ = {
        "providers": ["diffusers-tiny", "runpod"],
        "prompt": "a fox",
        "seed": 3,
        "size": (256, 256),
        "latencies": [0.5, 1.5],
    }
    updates = compare.vote_handler("model_a")({compare.blind_state: round_}, request=None)
    statuses = [updates[result.status] for result in compare.results[:2]]
    assert statuses == ["Made by **diffusers-tiny**.", "Made by **runpod**."]
    assert "Vote to see" not in str(updates)
    [vote] = updates[page.state.fresh]["votes"]  # kept in the browser, and not counted: chosen sides
    assert (vote["model_a"], vote["model_b"], vote["winner"], vote["drawn"]) == (
        "diffusers-tiny",
        "runpod",
        "model_a",
        False,
    )
    assert "a fox" not in str(vote) and vote["prompt_hash"]


def test_a_batch_is_headed_by_where_its_seeds_start_not_by_one_seed():
    from zimage_ui.params import GenerationParams
    from zimage_ui.ui.common import run_label

    one = GenerationParams(prompt="a fox", seed=7)
    assert run_label("runpod", one) == "runpod · seed 7"
    batch = one.model_copy(update={"num_images": 4})
    assert run_label("runpod", batch) == "runpod · 4 images from seed 7"


def test_an_enhanced_images_own_prompt_can_be_taken_instead_of_the_rewrite():
    from zimage_ui.ui.info_tab import readback_values

    read = {"prompt": "the rewrite", "enhanced": {"original": "my own words", "model": "qwen-plus"}}
    state = {"params": read, "turbo": True}
    assert readback_values(state, theirs=False)[0]["prompt"] == "the rewrite"
    assert readback_values(state, theirs=False, own=True)[0]["prompt"] == "my own words"
    plain = {"params": {"prompt": "just mine"}, "turbo": True}
    assert readback_values(plain, theirs=False, own=True)[0]["prompt"] == "just mine"
