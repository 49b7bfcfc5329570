"""The code's floors hold: `shared` → `services` → `gpu_setup` → `webapp` (a module imports only from its own
floor or lower ones), and no module reaches itself through its imports (lazy imports inside functions count)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parent.parent
FLOORS = ("shared", "services", "gpu_setup", "webapp")


def product_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for floor in FLOORS:
        for path in (ROOT / floor).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module → the product modules it imports (a `from package import submodule` names the submodule)."""
    modules = product_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module for alias in node.names]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach one another through their imports."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {frozenset({node} | {other for other in reach[node] if node in reach.get(other, set())}) for node in graph if node in reach[node]}
    return sorted(sorted(group) for group in groups)


def test_no_module_imports_itself_round_a_circle() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_floor_imports_from_a_floor_above_it() -> None:
    floor = {name: index for index, name in enumerate(FLOORS)}
    upward = [
        f"{module} → {target}"
        for module, targets in import_graph().items()
        for target in targets
        if floor[target.split(".")[0]] > floor[module.split(".")[0]]
    ]
    assert upward == []


# A step key ("text:3", steps.get("plan")) or an artifact's file name ("page-03.png", "book.epub") written out.
STEP_OR_ARTIFACT = re.compile(
    r"""["'](text|translation|image|narration|redo|rewrite):|steps(\([^)]*\))?\.get\(["'](caption|outline|plan|translation|book|order|language)["']\)"""
    r"""|["'](cover|title|page-\{?[^"']*)\.(png|mp3)["']|["']book\.(pdf|epub|m4b)["']|["']photo\.jpg["']|["']print-[^"']*\.(png|json)["']"""
)


def test_only_the_progress_module_spells_a_step_key_or_an_artifact_name() -> None:
    """Step names and artifact names live in `webapp/jobs/progress.py`; everyone else says `Steps.x`/`Artifacts.x`."""
    spelled = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("jobs", "api", "ui")
        for path in (ROOT / "webapp" / folder).rglob("*.py")
        if path.name != "progress.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if STEP_OR_ARTIFACT.search(line)
    ]
    assert spelled == []
