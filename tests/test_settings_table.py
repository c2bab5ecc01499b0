"""What a setting is lives in one table (`zimage_ui.settings`); everything else is derived from it.

A made-up setting added to a copy of the table appears in the params, the CLI's help, the API's
signature and docs, a Compare side's overrides and the infotext, without another file changing.
"""

from __future__ import annotations

import argparse
import ast
import inspect
from pathlib import Path

import pytest
from gradio import utils as gradio_utils
from pydantic import ValidationError

from zimage_ui import metadata
from zimage_ui.cli import add_param_flags
from zimage_ui.compare import allowed_keys, params_for_side, side_model
from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, params_model
from zimage_ui.providers.base import SentValues
from zimage_ui.settings import TABLE, Setting
from zimage_ui.ui.endpoints import setting_docs, settings_endpoint
from zimage_ui.ui.form import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
SHARPNESS = Setting(
    "sharpness",
    "sharpness",
    float,
    0.5,
    "How crisp the edges are, 0..1.",
    "Sharpness",
    0.0,
    1.0,
    "sharpness {value} is outside {low}..{high}",
    control="slider",
    step=0.1,
    metavar="X",
    side=True,
    infotext="Sharpness",
    example="0.7",
)
TABLE_PLUS = TABLE.with_setting(SHARPNESS)


def test_a_new_setting_is_a_params_field_with_its_default_help_and_range():
    model = params_model(TABLE_PLUS)
    params = model.model_validate({"prompt": "a fox"})
    assert params.sharpness == 0.5  # type: ignore[attr-defined]
    assert model.model_validate({"prompt": "a fox", "sharpness": 0.8}).sharpness == 0.8  # type: ignore[attr-defined]
    assert model.model_fields["sharpness"].description == SHARPNESS.help
    with pytest.raises(ValidationError, match=r"sharpness 1\.5 is outside 0\.\.1"):
        model.model_validate({"prompt": "a fox", "sharpness": 1.5})
    assert "sharpness" not in GenerationParams.model_fields  # the app's own model is untouched


def test_a_new_setting_is_a_cli_flag_with_its_help_and_default():
    parser = argparse.ArgumentParser(prog="zimage-ui generate")
    add_param_flags(parser, "json lines", TABLE_PLUS)
    text = " ".join(parser.format_help().split())
    assert "--sharpness X how crisp the edges are, 0..1 (default: 0.5)" in text
    args = parser.parse_args(["--prompt", "p", "--sharpness", "0.7", "--out", "x"])
    assert args.sharpness == 0.7
    with pytest.raises(SystemExit):
        parser.parse_args(["--prompt", "p", "--sharpness", "sharp", "--out", "x"])


def test_a_new_setting_is_an_api_argument_with_its_type_default_and_doc():
    async def make(provider: str, request: object, **values: object) -> dict:
        return values

    endpoint = settings_endpoint("Make.", before=[], returns="what was given", table=TABLE_PLUS)(make)
    params = inspect.signature(endpoint).parameters
    assert params["sharpness"].default == 0.5 and params["sharpness"].annotation is float
    names = [name for name, *_ in gradio_utils.get_function_params(endpoint)]  # what the API page reads
    assert names.index("sharpness") == names.index("variety") + 1  # after the last setting
    assert "    sharpness: How crisp the edges are, 0..1." in (endpoint.__doc__ or "")
    assert setting_docs(TABLE_PLUS)["sharpness"] == SHARPNESS.help


async def test_the_endpoint_passes_each_argument_by_name_to_its_implementation():
    seen: dict = {}

    async def make(provider: str, request: object, **values: object) -> None:
        seen.update(values, provider=provider)

    from zimage_ui.ui.endpoints import ApiArg

    endpoint = settings_endpoint(
        "Make.", before=[ApiArg("provider", str, "where", "")], returns="", table=TABLE_PLUS
    )(make)
    await endpoint("a fox", "tiny", sharpness=0.25)  # the prompt first, then the endpoint's own
    assert seen["provider"] == "tiny" and seen["prompt"] == "a fox" and seen["sharpness"] == 0.25
    assert seen["steps"] == 8 and seen["seed"] is None and "random_seed" not in seen


def test_a_new_setting_is_a_compare_override():
    side_type = side_model(TABLE_PLUS)
    side = side_type.parse("diffusers-tiny:steps=4,sharpness=0.7")
    assert side.overrides() == {"num_inference_steps": 4, "sharpness": 0.7}
    assert side.spec() == "diffusers-tiny:steps=4,sharpness=0.7"
    assert side.title() == "diffusers-tiny (steps 4, sharpness 0.7)"
    base = params_model(TABLE_PLUS).model_validate({"prompt": "a fox", "seed": 7})
    assert params_for_side(base, side).sharpness == 0.7  # type: ignore[attr-defined]
    with pytest.raises(InvalidParams, match="sharpness"):
        params_for_side(base, side_type.parse("diffusers-tiny:sharpness=3"), strict=True)
    with pytest.raises(InvalidParams, match=r"is not a number, e\.g\. sharpness=0\.7"):
        side_type.parse("diffusers-tiny:sharpness=crisp")
    assert "sharpness" in allowed_keys(TABLE_PLUS) and "sharpness" not in allowed_keys()


def test_a_new_setting_is_written_in_the_infotext_when_not_its_default():
    model = params_model(TABLE_PLUS)
    sent = SentValues(width=1024, height=1024, steps=8, seed=7, shift=3.0)
    sharp = model.model_validate({"prompt": "a fox", "sharpness": 0.8})
    plain = model.model_validate({"prompt": "a fox"})
    sharp_text, plain_text = (metadata.infotext(p, sent, "x", TABLE_PLUS) for p in (sharp, plain))
    assert "Sharpness: 0.8" in sharp_text and "Sharpness" not in plain_text


def _type_checker_view(path: Path, name: str) -> list[str]:
    """The annotated fields of the class the type checker sees under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for inner in node.body:
                if isinstance(inner, ast.ClassDef) and inner.name == name:
                    return [s.target.id for s in inner.body if isinstance(s, ast.AnnAssign)]  # type: ignore[union-attr]
    raise AssertionError(f"no TYPE_CHECKING view of {name} in {path}")


def test_the_type_checkers_views_match_the_built_models():
    from zimage_ui.compare import Side

    assert _type_checker_view(ROOT / "zimage_ui/params.py", "GenerationParams") == list(
        GenerationParams.model_fields
    )
    assert _type_checker_view(ROOT / "zimage_ui/compare.py", "Side") == list(Side.model_fields)


def test_the_page_form_reads_the_settings_in_the_tables_order():
    shorts = [setting.short for setting in TABLE]
    seed = shorts.index("seed")
    assert list(SETTING_NAMES) == [*shorts[: seed + 1], "random_seed", *shorts[seed + 1 :]]


@pytest.mark.parametrize("setting", [s for s in TABLE if s.ranged], ids=lambda s: s.name)
def test_each_range_is_the_params_range(setting: Setting):
    """The table's range is the one params enforces: its ends pass, one step beyond fails."""
    assert setting.low is not None and setting.high is not None
    base = {"prompt": "a fox"}
    for inside in (setting.low, setting.high):
        GenerationParams.model_validate({**base, setting.name: setting.kind(inside)})
    for outside in (setting.low - setting.step, setting.high + setting.step):
        with pytest.raises(ValidationError, match="is outside"):
            GenerationParams.model_validate({**base, setting.name: setting.kind(outside)})


def test_the_built_models_cross_a_process_boundary_by_pickle():
    """ZeroGPU's worker and multiprocessing take picklable values: the built models are found again
    by their module and name, and two params that share a seed stay two params."""
    import pickle

    from zimage_ui.compare import Side

    one = GenerationParams.model_validate({"prompt": "a fox", "seed": 7})
    two = GenerationParams.model_validate({"prompt": "a heron", "seed": 7})
    side = Side.parse("diffusers-tiny:steps=4,size=512x512")
    for value in (one, two, side):
        copy = pickle.loads(pickle.dumps(value))
        assert copy == value and type(copy) is type(value)
    assert pickle.loads(pickle.dumps(one)) != pickle.loads(pickle.dumps(two))


def test_the_endpoints_share_one_hidden_input_per_setting():
    """Every component is state each new session builds: /generate, /compare and /sweep take the
    same prompt and settings inputs, and only their own arguments are theirs."""
    from gradio.components.api_component import Api

    from zimage_ui.ui import build_demo
    from zimage_ui.ui.api import build_api

    labels = [block.label for block in build_api().blocks.values() if isinstance(block, Api)]
    assert all(labels.count(setting.short) == 1 for setting in TABLE), labels
    assert labels.count("sides") == 1 and labels.count("x_kind") == 1
    assert not [block for block in build_demo().blocks.values() if isinstance(block, Api)]  # not the page's
