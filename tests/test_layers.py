"""The house's shape, read from the code: layers that only import downwards, no import circle, no
module over 600 lines. The layers are DESIGN's (docs/ARCHITECTURE.md draws them)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "zimage_ui"
MAX_LINES = 600

# Bottom to top: a module may import from its own layer or any layer below, never above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("errors", "redaction", "sizes", "files", "cancel", "env", "settings", "params")),
    ("net", ("net",)),
    ("inputs", ("image_inputs", "lora_downloads", "visitor_files", "foreign_metadata")),
    ("providers", ("providers.base", "providers.hosted", "providers.local")),
    ("registry", ("providers",)),
    ("run", ("runner", "runs", "metadata", "infotext", "codegen", "keyguard", "rating", "votes", "sheets")),
    (
        "features",
        ("compare", "sweep", "presets", "history", "preset_sharing", "arena", "provider_stats", "enhancer"),
    ),
    ("cli", ("cli_output", "cli_commands", "cli")),
    ("ui", ("ui",)),
    ("entry", ("__main__",)),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """Every zimage_ui module this code imports when it runs (lazy imports inside functions too;
    imports made only for the type checker are left out: they never run)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("zimage_ui."):
                    found.add(alias.name.removeprefix("zimage_ui."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zimage_ui"):
            base = node.module.removeprefix("zimage_ui").lstrip(".")
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                found.add(submodule if submodule in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard("")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), modules) - {name}
        for name, path in modules.items()
    }


def _layer(module: str) -> int:
    """The layer of the longest prefix that names this module (`providers.base` before `providers`)."""
    best, level = -1, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    assert level >= 0, f"zimage_ui.{module} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    return level


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_every_import_points_down_the_layers():
    upward = [
        f"zimage_ui.{source} ({LAYERS[_layer(source)][0]}) imports zimage_ui.{target} "
        f"({LAYERS[_layer(target)][0]})"
        for source, targets in _graph().items()
        for target in sorted(targets)
        if _layer(target) > _layer(source)
    ]
    assert upward == []


def test_no_import_circle():
    assert _circles(_graph()) == []


def test_the_hosted_adapters_and_the_local_engine_do_not_import_each_other():
    graph = _graph()
    crossing = [
        (source, target)
        for source, targets in graph.items()
        for target in targets
        for one, other in (("providers.hosted", "providers.local"), ("providers.local", "providers.hosted"))
        if source.startswith(one) and target.startswith(other)
    ]
    assert crossing == []


def test_the_network_layer_imports_nothing_above_the_ground_floor():
    graph = _graph()
    ground = 0
    above = [
        (source, target)
        for source, targets in graph.items()
        if source.startswith("net")
        for target in targets
        if not target.startswith("net") and _layer(target) != ground
    ]
    assert above == []


def test_no_module_is_over_600_lines():
    long = {
        name: count
        for name, path in _modules().items()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_checks_see_a_circle_and_an_upward_import():
    """The walker itself: a made-up circle and a made-up upward import are found."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("ui.generate_tab") > _layer("providers.hosted.scenario") > _layer("net.session")
    assert _layer("providers") > _layer("providers.base")
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from zimage_ui.net import http\n"
        "if TYPE_CHECKING:\n    from zimage_ui.ui import form\n"
        "def f():\n    from zimage_ui.runner import generate_one\n"
    )
    assert _imports(tree, {"net.http": PACKAGE, "runner": PACKAGE}) == {"net.http", "runner"}
