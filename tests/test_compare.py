"""Comparisons, sweeps and sheets on the tiny model."""

import io

import numpy as np
import pytest
from PIL import Image

from zimage_ui.cancel import CancelToken
from zimage_ui.compare import Side, params_for_side, run_comparison
from zimage_ui.errors import InvalidParams
from zimage_ui.metadata import read_provenance
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import Progress
from zimage_ui.sheets import render_grid
from zimage_ui.sweep import SweepSpec, check_size, parse_axis, plan, read_grid_spec, run_sweep

TINY = "diffusers-tiny"
BASE = GenerationParams(prompt="a red fox", width=256, height=256, seed=5, num_inference_steps=4)


async def test_sides_share_prompt_and_seed_and_apply_their_overrides():
    sides = [Side(provider=TINY, num_inference_steps=2), Side(provider=TINY, num_inference_steps=4)]
    seen: dict[int, list[int]] = {0: [], 1: []}

    def on_progress(index: int, update: Progress) -> None:
        if update.step:
            seen[index].append(update.step)

    outcomes = await run_comparison(sides, BASE.model_copy(update={"seed": None}), progress=on_progress)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert outcomes[0].seed == outcomes[1].seed
    assert [o.prepared.sent.steps for o in outcomes] == [2, 4]
    assert seen == {0: [1, 2], 1: [1, 2, 3, 4]}
    first, second = (np.asarray(o.result.images[0]) for o in outcomes)
    assert not np.array_equal(first, second)


async def test_a_failing_side_keeps_its_error_and_the_others_finish():
    sides = [Side(provider=TINY), Side(provider="diffusers")]  # no GPU here: diffusers can't run
    outcomes = await run_comparison(sides, BASE)
    assert outcomes[0].ok and outcomes[0].pngs
    assert not outcomes[1].ok
    assert outcomes[1].error.startswith("diffusers")


async def test_stop_stops_every_side_and_says_so():
    token = CancelToken()
    token.cancel()
    outcomes = await run_comparison([Side(provider=TINY), Side(provider=TINY)], BASE, cancel=token)
    assert all(not o.ok and "stop" in o.error for o in outcomes)


def test_bad_override_is_named_before_any_work():
    with pytest.raises(InvalidParams) as caught:
        params_for_side(BASE, Side(provider=TINY, width=1000))
    assert "diffusers-tiny (width 1000): width" in caught.value.fields


async def test_side_count_is_2_to_6():
    with pytest.raises(InvalidParams, match="2 to 6"):
        await run_comparison([Side(provider=TINY)], BASE)


@pytest.mark.parametrize(
    ("kind", "text", "values"),
    [
        ("steps", "1, 4, 8", [1, 4, 8]),
        ("steps", "1-8", [1, 2, 3, 4, 5, 6, 7, 8]),
        ("steps", "1-8 (+2)", [1, 3, 5, 7]),
        ("steps", "2-8 [4]", [2, 4, 6, 8]),
        ("seed", "10-12, 99", [10, 11, 12, 99]),
        ("shift", "1-2 (+0.5)", [1.0, 1.5, 2.0]),
        ("shift", "2.5, 3", [2.5, 3.0]),
        ("provider", "diffusers-tiny, diffusers", ["diffusers-tiny", "diffusers"]),
        ("prompt_sr", 'fox, "wolf, grey", cat', ["fox", "wolf, grey", "cat"]),
    ],
)
def test_axis_values_lists_and_ranges(kind, text, values):
    assert parse_axis(kind, text, prompt="a red fox").values == values


@pytest.mark.parametrize(
    ("kind", "text", "words"),
    [
        ("steps", "a, b", "not a number"),
        ("steps", "", "no values"),
        ("provider", "dalle", "unknown provider"),
        ("prompt_sr", "dog, cat", "must appear in the prompt"),
        ("shift", "1-3 (+0)", "above 0"),
    ],
)
def test_bad_axis_values_are_named(kind, text, words):
    with pytest.raises(InvalidParams) as caught:
        parse_axis(kind, text, prompt="a red fox")
    assert words in str(caught.value)


def test_cells_over_the_cap_are_refused_before_running():
    spec = SweepSpec(params=BASE, provider=TINY, x=parse_axis("seed", "1-10"), y=parse_axis("steps", "1-8"))
    assert spec.cell_count == 80
    with pytest.raises(InvalidParams, match="80 cells is over the limit of 36"):
        check_size(spec)


def test_plan_applies_prompt_replacement_and_provider_axes():
    spec = SweepSpec(
        params=BASE,
        provider=TINY,
        x=parse_axis("prompt_sr", "fox, cat", "a red fox"),
        y=parse_axis("provider", "diffusers-tiny, diffusers"),
    )
    cells = plan(spec)
    assert [[c.params.prompt for c in row] for row in cells] == [["a red fox", "a red cat"]] * 2
    assert [row[0].provider for row in cells] == ["diffusers-tiny", "diffusers"]


async def test_two_by_two_sweep_renders_a_labelled_grid_that_records_its_axes():
    spec = SweepSpec(params=BASE, provider=TINY, x=parse_axis("steps", "2, 4"), y=parse_axis("seed", "1, 2"))
    done: list[int] = []
    result = await run_sweep(spec, progress=lambda n, total: done.append(n))
    assert done == [1, 2, 3, 4]
    assert all(o.ok for row in result.outcomes for o in row)
    data = result.grid_png()
    grid = Image.open(io.BytesIO(data))
    assert grid.width > 2 * 256 and grid.height > 2 * 256  # cells plus labels
    assert grid.width < 3 * 256 and grid.height < 3 * 256
    again = read_grid_spec(data)
    assert again == result.spec
    assert [o.prepared.sent.seed for o in result.outcomes[1]] == [2, 2]
    assert read_provenance(result.outcomes[0][1].pngs[0])["params"]["num_inference_steps"] == 4


def test_grid_draws_failed_cells_in_place():
    ok = Image.new("RGB", (64, 64), "blue")
    sheet = render_grid([[ok, None]], ["a", "b"], errors=[[None, "runpod: rate limited"]])
    assert sheet.size[0] == 128
    assert sheet.getpixel((64 + 60, sheet.height - 2)) != (0, 0, 255)
