"""The layering the code promises, checked from the source: imports point one way, and no cycles.

entry point (``bot/__main__.py``) -> ops -> adapters -> runtime -> core -> store | assistants -> base.
Only the store talks to Redis; adapters never reach the store, Redis or OpenAI.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
PACKAGES = ("bot", "adapters")

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("bot.__main__",)),
    ("ops", ("bot.ops",)),
    ("adapters", ("adapters",)),
    ("runtime", ("bot.runtime",)),
    ("core", ("bot.core",)),
    ("store", ("bot.store",)),
    ("assistants", ("bot.assistants",)),
    ("base", ("bot",)),
)
"""Most specific prefix first. A module may import its own layer or any layer below it, except that
store and assistants sit side by side and may not import each other."""

SIDE_BY_SIDE = {frozenset({"store", "assistants"})}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path, module: str) -> set[str]:
    """Every module this file imports at run time (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def internal_graph() -> dict[str, set[str]]:
    mods = sources()
    return {name: {i for i in imports(path, name) if i in mods and i != name} for name, path in mods.items()}


def layer(module: str) -> str:
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(module)


def rank(name: str) -> int:
    return [n for n, _ in LAYERS].index(name)


def test_only_the_store_imports_redis() -> None:
    offenders = {
        name: sorted(i for i in imports(path, name) if i.split(".")[0] in ("redis", "fakeredis"))
        for name, path in sources().items()
        if not (name == "bot.store" or name.startswith("bot.store."))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_adapters_import_neither_openai_nor_the_store() -> None:
    offenders = {
        name: sorted(i for i in imports(path, name)
                     if i.split(".")[0] in ("openai", "redis", "fakeredis", "httpx2") or i.startswith("bot.store"))
        for name, path in sources().items()
        if name.startswith("adapters")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_entry_point_of_bot_imports_adapters() -> None:
    offenders = sorted(
        name for name, path in sources().items()
        if name.startswith("bot") and name != "bot.__main__"
        and any(i.split(".")[0] == "adapters" for i in imports(path, name))
    )
    assert offenders == []


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, deps in internal_graph().items():
        mine = layer(module)
        for dep in deps:
            theirs = layer(dep)
            if frozenset({mine, theirs}) in SIDE_BY_SIDE or rank(theirs) < rank(mine):
                wrong.append(f"{module} ({mine}) -> {dep} ({theirs})")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = internal_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in sources().items()}
    assert {name: n for name, n in sizes.items() if n > 420} == {}


def test_the_checks_see_a_violation() -> None:
    """The checks themselves are not blind: the parser finds imports at every depth."""
    path = ROOT / "bot" / "__main__.py"
    assert any(i.startswith("adapters") for i in imports(path, "bot.__main__"))
    assert layer("bot.store.lock") == "store" and layer("bot.domain") == "base"
