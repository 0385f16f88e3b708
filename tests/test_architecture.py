"""The layering of docs/architecture.md, checked on the source: every import of a senet module points down, and the
packages import each other without cycles. Imports inside functions count too: a lazy import is still a dependency."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "senet"

# Bottom up: a unit may import the units of lower layers and, within itself, anything.
LAYERS = [
    {"_version", "constants"},  # names and numbers only: the run folder's file names among them
    {"files", "environment", "validate"},
    {"layers"},
    {"models"},
    {"weights", "complexity", "retrofit"},
    {"factory"},
    {"data", "export", "optimize", "transfer", "detection"},
    {"training"},
    {"analysis"},
    {"cli"},
    {"__main__"},  # python -m senet
]
LEVEL = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str | None:
    """The unit of a dotted senet module name ("senet.models.resnet" → "models"); None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """(imported senet module, line) for every import statement in ``path``, relative ones resolved."""
    module = "senet." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("senet")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("senet"):
                names = [f"{target}.{a.name}" for a in node.names] if target == "senet" else [target]
                found += [(n, node.lineno) for n in names]
    return found


def _edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import between two different units."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        unit = _unit("senet." + ".".join(path.relative_to(SRC).with_suffix("").parts))
        if unit in (None, "__init__"):
            continue  # senet/__init__.py gathers the public API from every layer
        for target, line in _imports(path):
            other = _unit(target)
            if other is not None and other != unit:
                edges.append((unit, other, f"{path.relative_to(SRC.parent)}:{line} imports {target}"))
    return edges


def test_every_unit_has_a_layer():
    units = {
        p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    units -= {"__init__", "py"}
    assert units <= set(LEVEL), (
        f"units without a layer (add them to LAYERS and docs/architecture.md): {units - set(LEVEL)}"
    )


def test_imports_point_down():
    upward = [where for a, b, where in _edges() if LEVEL[b] >= LEVEL[a]]
    assert not upward, "imports that do not point to a lower layer:\n" + "\n".join(upward)


def test_no_cycles_between_units():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _edges():
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(u for u in graph if reaches(u, u, {u}))
    assert not cycles, f"units on an import cycle: {cycles}"


@pytest.mark.parametrize("bad", ["from ..training import train", "from senet.cli import main"])
def test_the_check_finds_an_upward_import(tmp_path, monkeypatch, bad):
    """The checker itself: a models file that imports a higher layer is reported."""
    fake = tmp_path / "senet"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "x.py").write_text(f"def f():\n    {bad}\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert [(a, b) for a, b, _ in _edges()] == [("models", bad.split()[1].strip(".").split(".")[-1])]
