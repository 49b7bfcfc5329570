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


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in list(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


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
    r"""|["'](cover|title|page-\{?[^"']*)\.(png|mp3)["']|["']book\.(pdf|epub|m4b)["']|["']photo\.jpg["']"""
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
