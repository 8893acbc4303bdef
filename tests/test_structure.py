"""The library's shape: imports flow one way, classes stay readable, nothing reseeds the
caller's random numbers. Read from the source with ``ast``, so every module is covered."""

import ast
from pathlib import Path

import lslm

ROOT = Path(lslm.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(ROOT.rglob("*.py"))}


def lslm_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Every lslm module that ``name`` imports, at the top or inside a function."""
    found = set()
    package = name if name in known and (ROOT / Path(*name.split(".")[1:]) / "__init__.py").exists() else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            # `from lslm import distributed` imports the module lslm.distributed.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "lslm":
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    trees = sources()
    known = set(trees)
    return {name: lslm_imports(name, tree, known) for name, tree in trees.items()}


def test_no_import_cycle_inside_lslm():
    graph = import_graph()
    assert "lslm.model" in graph["lslm.hf"], "the reader should see the hf -> model edge"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_class_is_longer_than_about_200_lines():
    long = []
    for name, tree in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 220:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long


def test_nothing_in_lslm_reseeds_the_global_generator():
    # Seeding belongs to the caller; the library seeds its own torch.Generator objects, or
    # forks the global one with lslm.utils.seeded.
    offenders = []
    for name, tree in sources().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("manual_seed", "seed", "set_rng_state")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("torch", "random")):
                offenders.append(f"{name}:{node.lineno}")
    allowed = {"lslm.utils", "lslm.loop"}  # seeded() and the loop's own generator, both forked
    assert [o for o in offenders if o.split(":")[0] not in allowed] == []
