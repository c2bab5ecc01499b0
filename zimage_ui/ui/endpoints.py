"""The public API's endpoints (`/generate`, `/compare`, `/sweep`): their signatures come from the
settings table, so a setting added there is an argument of each, typed, with its default and
its help in the API page and the MCP tool.

An endpoint is written as `async def impl(<its own arguments>, request, [progress], **values)`;
`settings_endpoint` gives Gradio a function with the whole explicit signature (its own
arguments, one per setting in form order, the image inputs, then Gradio's request and progress)
and calls `impl` with the arguments by name: `values` holds the settings and the image inputs,
which `ui.form.api_params` reads by the page's rules.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components.api_component import Api
from gradio.context import get_blocks_context
from gradio_client.utils import python_type_to_json_schema

from zimage_ui.params import DEFAULT_STRENGTH
from zimage_ui.settings import TABLE, Setting, Table
from zimage_ui.ui.inputs_panel import API_INPUT_DOCS

REQUIRED = inspect.Parameter.empty
SEED_DOC = 'a whole number, or empty (null, "" or "random") to draw one; the seed used is returned.'


@dataclass(frozen=True)
class ApiArg:
    """One argument of an endpoint: its name, Python type, help, default and JSON schema."""

    name: str
    annotation: Any
    doc: str
    default: Any = REQUIRED
    schema: Mapping[str, Any] | None = None  # None: from the annotation

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(
            self.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=self.default,
            annotation=self.annotation,
        )

    def json_schema(self) -> dict[str, Any]:
        """The argument's schema for the API page, `gradio_client` and MCP: type, range, help."""
        schema = dict(self.schema) if self.schema else python_type_to_json_schema(self.annotation)
        return {**schema, "description": self.doc}

    def component(self) -> Api:
        """A hidden input that hands the value over as sent (no page control's rounding or
        clamping), so the endpoint checks it and names the argument when it is wrong."""
        return Api(None if self.default is REQUIRED else self.default, self.json_schema(), label=self.name)


def _number_schema(setting: Setting) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer" if setting.kind is int else "number"}
    if setting.low is not None:
        schema["minimum"] = setting.low
    if setting.high is not None:
        schema["maximum"] = setting.high
    return schema


def _setting_arg(setting: Setting) -> ApiArg:
    """The API's argument for one setting: whole numbers as integers, each with its range; the
    seed as a whole number or empty (random). The prompt is the one required argument."""
    if setting.control == "seed":
        whole = _number_schema(setting)
        schema = {"anyOf": [whole, {"type": "string"}, {"type": "null"}]}
        return ApiArg(setting.short, int | str | None, f"{setting.help} Here: {SEED_DOC}", None, schema)
    if setting.kind is str:
        default = REQUIRED if setting.default is None else setting.default
        return ApiArg(setting.short, str, setting.help, default, {"type": "string"})
    return ApiArg(setting.short, setting.kind, setting.help, setting.default, _number_schema(setting))


def setting_args(table: Table = TABLE) -> list[ApiArg]:
    """Every setting's argument, in the form's order."""
    return [_setting_arg(setting) for setting in table]


def setting_docs(table: Table = TABLE) -> dict[str, str]:
    """What each shared setting means, for the API docs and the MCP tools' argument descriptions."""
    return {arg.name: arg.doc for arg in setting_args(table)}


def endpoint_args(before: Sequence[ApiArg], table: Table = TABLE) -> list[ApiArg]:
    """An endpoint's arguments before the image inputs: the prompt first (so the simplest call,
    `predict("a red fox", api_name=...)`, works), then its own, then the other settings."""
    settings = setting_args(table)
    prompt = [arg for arg in settings if arg.name == "prompt"]
    return [*prompt, *before, *(arg for arg in settings if arg.name != "prompt")]


INPUT_ARGS = (
    ApiArg("image", str | None, API_INPUT_DOCS["image"], None),
    ApiArg("image_url", str, API_INPUT_DOCS["image_url"], ""),
    ApiArg("strength", float, API_INPUT_DOCS["strength"], DEFAULT_STRENGTH),
    ApiArg("loras", str, API_INPUT_DOCS["loras"], ""),
)
_REQUEST = inspect.Parameter(
    "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request
)
_PROGRESS = inspect.Parameter(
    "progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress(), annotation=gr.Progress
)

Impl = Callable[..., Awaitable[Any]]


def settings_endpoint(
    summary: str,
    *,
    before: Sequence[ApiArg],
    returns: str,
    progress: bool = False,
    table: Table = TABLE,
) -> Callable[[Impl], Impl]:
    """Make `impl` an API endpoint whose signature and docstring come from the settings table."""

    def build(impl: Impl) -> Impl:
        own = endpoint_args(before, table)
        args = [*own, *INPUT_ARGS]
        parameters = [arg.parameter() for arg in args] + [_REQUEST] + ([_PROGRESS] if progress else [])
        returned = typing.get_type_hints(impl).get("return", Any)
        signature = inspect.Signature(parameters, return_annotation=returned)

        async def endpoint(*positional: Any, **named: Any) -> Any:
            bound = signature.bind(*positional, **named)
            bound.apply_defaults()
            return await impl(**bound.arguments)

        docs = "\n".join(f"    {arg.name}: {arg.doc}" for arg in args)
        endpoint.__name__ = endpoint.__qualname__ = impl.__name__.lstrip("_")
        endpoint.__module__ = impl.__module__
        endpoint.__doc__ = f"{summary}\n\nArgs:\n{docs}\n\nReturns:\n    {returns}\n"
        endpoint.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returned}
        setattr(endpoint, "__signature__", signature)  # noqa: B010 - what inspect.signature reads
        setattr(endpoint, API_ARGS, tuple(own))
        return endpoint

    return build


API_ARGS = "_zimage_api_args"


def api_components(endpoint: Impl) -> list[Api]:
    """Hidden inputs for an endpoint's arguments before the image inputs, in its signature's order.

    Made once per Blocks being built and shared between endpoints where an argument is the same
    (the prompt and every setting): each component is state every new session builds, so three
    endpoints cost 16 inputs, not 34. The image inputs are the panel's own hidden components."""
    context = get_blocks_context()
    made: dict[str, Api] = getattr(context, _SHARED, None) or {}
    setattr(context, _SHARED, made)
    components = []
    for arg in getattr(endpoint, API_ARGS):
        key = json.dumps([arg.name, arg.json_schema(), repr(arg.default)], sort_keys=True)
        if key not in made:
            made[key] = arg.component()
        components.append(made[key])
    return components


_SHARED = "_zimage_api_inputs"
