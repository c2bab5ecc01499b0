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
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from zimage_ui.params import DEFAULT_STRENGTH
from zimage_ui.settings import TABLE, Setting, Table
from zimage_ui.ui.inputs_panel import API_INPUT_DOCS

REQUIRED = inspect.Parameter.empty
RANDOM_SEED_DOC = "Draw a new seed for this run; the seed used is returned."
SEED_DOC = "ignored when random_seed is true."


@dataclass(frozen=True)
class ApiArg:
    """One of an endpoint's own arguments, before the settings."""

    name: str
    annotation: Any
    doc: str
    default: Any = REQUIRED

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(
            self.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=self.default,
            annotation=self.annotation,
        )


def _setting_args(setting: Setting) -> list[ApiArg]:
    """The API's argument(s) for one setting: numbers as floats (a Gradio number box gives one),
    the seed as text with its random_seed switch."""
    if setting.control == "seed":
        return [
            ApiArg(setting.short, str, f"{setting.help} As text; {SEED_DOC}", ""),
            ApiArg("random_seed", bool, RANDOM_SEED_DOC, True),
        ]
    if setting.kind is str:
        return [ApiArg(setting.short, str, setting.help, "" if setting.default is None else setting.default)]
    return [ApiArg(setting.short, float, setting.help, setting.default)]


def setting_args(table: Table = TABLE) -> list[ApiArg]:
    """Every setting's argument, in the form's order (the order of its components)."""
    return [arg for setting in table for arg in _setting_args(setting)]


def setting_docs(table: Table = TABLE) -> dict[str, str]:
    """What each shared setting means, for the API docs and the MCP tools' argument descriptions."""
    return {arg.name: arg.doc for arg in setting_args(table)}


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
        args = [*before, *setting_args(table), *INPUT_ARGS]
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
        return endpoint

    return build
