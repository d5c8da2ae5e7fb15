"""assay's import graph: layers you can read off the folders, every import pointing down, no cycles.

Every import counts: top level, under ``if TYPE_CHECKING:`` and inside functions (an import
inside a function is for laziness, never a way to hide a cycle or an upward edge). Imports of
third-party libraries are not edges. The layers, bottom to top:

    core < {store, executors, sinks} < engine < analysis < report < cli < ml < families

A module may import its own layer and the layers below it. The three middle packages are
plug-in families side by side and do not import one another, with one exception: executors
import the store, the medium their workers coordinate through (a claim, a dead pool worker's
run, a SLURM job's records); the store imports only core.
"""

import ast
from pathlib import Path

import assay

SRC = Path(assay.__file__).parent

LAYERS = ["core", "middle", "engine", "analysis", "report", "cli", "ml", "families"]
MIDDLE = ("store", "executors", "sinks")
# (importer, imported) pairs allowed inside the middle layer; see the module docstring
MIDDLE_ALLOWED = {("executors", "store")}


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def package_of(module: str) -> str:
    """``assay.store._sql`` -> ``store``; top-level modules name themselves (``_cli``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> str | None:
    """The layer of an assay module; None for the ``assay`` facade (checked on its own)."""
    package = package_of(module)
    if module == "assay":
        return None
    if package in MIDDLE:
        return "middle"
    if package in ("_cli", "__main__"):
        return "cli"
    if package == "testing":  # the conformance suites drive the engine's API
        return "engine"
    assert package in LAYERS, f"{module} is in no layer; add its package to LAYERS"
    return package


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every assay module ``name`` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            hits = [n for n in names if n in known]  # `from . import _x`: the submodule
            found |= set(hits) if hits else ({target} if target in known else set())
        elif isinstance(node, ast.Import):
            for alias in node.names:
                # `import assay.x.y` names the deepest module that exists
                parts = alias.name.split(".")
                while parts and ".".join(parts) not in known:
                    parts.pop()
                if parts:
                    found.add(".".join(parts))
    return found - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def facade_layer() -> int:
    """``assay`` re-exports names from lower layers lazily; importing it is importing the
    highest of them."""
    homes = {f"assay{m}" for m in assay._PUBLIC.values()}
    return max(LAYERS.index(layer_of(m)) for m in homes)


def test_the_graph_sees_every_kind_of_import():
    """The walk counts function-level and TYPE_CHECKING imports: the facade's TYPE_CHECKING
    block and the CLI's function-level imports are edges."""
    g = graph()
    assert "assay.engine._api" in g["assay"]  # under `if TYPE_CHECKING:`
    assert "assay.engine._api" in g["assay._cli"]  # inside functions
    assert "assay.core._errors" in g["assay.core._config"]  # top level


def test_every_import_points_down_the_layers():
    top = facade_layer()
    wrong = []
    for name, deps in sorted(graph().items()):
        if name == "assay":
            continue
        own = LAYERS.index(layer_of(name))
        for dep in sorted(deps):
            if dep == "assay":
                if top > own:
                    wrong.append(f"{name} -> assay (the facade reaches up to {LAYERS[top]})")
                continue
            other = LAYERS.index(layer_of(dep))
            if other > own:
                wrong.append(f"{name} ({LAYERS[own]}) -> {dep} ({LAYERS[other]})")
            elif other == own == LAYERS.index("middle"):
                pair = (package_of(name), package_of(dep))
                if pair[0] != pair[1] and pair not in MIDDLE_ALLOWED:
                    wrong.append(f"{name} -> {dep} ({pair[0]} and {pair[1]} are siblings)")
    assert wrong == [], "imports pointing up or sideways:\n" + "\n".join(wrong)


def test_the_import_graph_has_no_cycles():
    g = {k: {d for d in v if d != "assay"} for k, v in graph().items()}  # the lazy facade
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node)


def test_the_facade_points_at_existing_homes():
    """Every public name's home is a module of the tree, and defines it."""
    known = set(modules())
    for name, home in assay._PUBLIC.items():
        assert f"assay{home}" in known, f"assay.{name} -> assay{home}: no such module"
        assert getattr(assay, name) is not None


def test_test_files_have_unique_names():
    """pytest imports test modules by basename (no packages under tests/): two families'
    `test_stages.py` would stop the whole collection."""
    tests = Path(__file__).resolve().parent.parent
    names = [p.name for p in tests.rglob("*.py") if p.name != "conftest.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
