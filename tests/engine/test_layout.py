"""The core's module graph has no cycles, and no core module imports a family or the ML layer.

Checked statically from each module's top-level imports: an import inside a function is for
laziness only (torch, pandas), never a way to hide a cycle, so top-level imports are the graph.
"""

import ast
from pathlib import Path

import assay

SRC = Path(assay.__file__).parent


def core_modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[1] in ("families", "ml", "report"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in tree.body:  # top level only, and not under `if TYPE_CHECKING:`
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for candidate in (target, *(f"{target}.{a.name}" for a in node.names)):
                if candidate in known and candidate != name:
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known and a.name != name}
    return found


def test_core_import_graph_is_acyclic():
    modules = core_modules()
    known = set(modules)
    graph = {name: top_level_imports(name, path, known) for name, path in modules.items()}
    # the package facade re-exports everything lazily; it is no edge of the graph
    graph = {k: {d for d in v if d != "assay"} for k, v in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_core_never_imports_a_family_or_the_ml_layer():
    for name, path in core_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports included
            if isinstance(node, ast.ImportFrom):
                targets = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                relative = target.startswith(".")
                bare = target.lstrip(".")
                head = bare.split(".")[0] if relative else ".".join(bare.split(".")[:2])
                assert head not in ("families", "ml", "assay.families", "assay.ml"), (
                    f"{name} imports {target}"
                )


def test_test_files_have_unique_names():
    """pytest imports test modules by basename (no packages under tests/): two families'
    `test_stages.py` would stop the whole collection."""
    tests = Path(__file__).resolve().parent.parent
    names = [p.name for p in tests.rglob("*.py") if p.name != "conftest.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
