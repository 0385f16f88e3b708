"""The layering of docs/architecture.md, checked on the source: every import of a senet module points down, and the
modules import each other without cycles, inside a unit as well as between units. Imports inside functions count
too (a lazy import is still a dependency), and so do ``importlib.import_module("senet....")`` calls."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "senet"
ROOT = "senet"  # the package itself: it gathers the public API from every layer, so it sits above them all

# Bottom up: a unit may import the units of lower layers and, within itself, anything (but no cycle).
LAYERS = [
    {"_version", "constants"},  # names and numbers only: the run folder's file names among them
    {"files", "environment", "validate"},
    {"layers"},
    {"models"},
    {"weights", "complexity", "retrofit"},
    {"factory"},
    {"data", "export", "optimize", "transfer", "detection"},
    {"conversion"},  # other layouts' weights files as senet ones: a model (factory) and its preprocessing (data)
    {"training"},
    {"analysis"},
    {"cli"},
    {"__main__"},  # python -m senet
    {ROOT},  # senet/__init__.py: imported by no unit
]
LEVEL = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module(path: pathlib.Path) -> str:
    """The dotted name of a source file ("src/senet/models/resnet.py" → "senet.models.resnet")."""
    return ".".join([ROOT, *path.relative_to(SRC).with_suffix("").parts]).removesuffix(".__init__")


def _unit(module: str) -> str:
    """The unit of a dotted senet module name ("senet.models.resnet" → "models"); ROOT for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _is_module(name: str) -> bool:
    """Whether a dotted senet name is a module or package of the source tree (not a name defined in one)."""
    parts = name.split(".")[1:]
    return (SRC.joinpath(*parts).with_suffix(".py")).is_file() or (SRC.joinpath(*parts) / "__init__.py").is_file()


def _string_import(node: ast.AST) -> str | None:
    """The module named by ``importlib.import_module("senet.x")`` or ``__import__("senet.x")``, else None."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    target = node.args[0].value
    if name in ("import_module", "__import__") and isinstance(target, str) and target.split(".")[0] == ROOT:
        return target
    return None


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """(imported senet module, line) for every import in ``path``, relative ones resolved; ``from m import name``
    counts as an import of ``m.name`` where that is a module, else of ``m``."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == ROOT:
                names = {f"{target}.{a.name}" for a in node.names}
                found += [(n if _is_module(n) else target, node.lineno) for n in sorted(names)]
        elif (target := _string_import(node)) is not None:
            found.append((target, node.lineno))
    return found


def _module_edges() -> list[tuple[str, str, str]]:
    """(importing module, imported module, where) for every import of one senet module by another."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module(path)
        for target, line in _imports(path):
            if target != module:
                edges.append((module, target, f"{path.relative_to(SRC.parent)}:{line} imports {target}"))
    return edges


def _edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import between two different units."""
    edges = []
    for a, b, where in _module_edges():
        if a == ROOT:
            continue  # senet/__init__.py gathers the public API from every layer
        if _unit(a) != _unit(b):
            edges.append((_unit(a), _unit(b), where))
    return edges


def _units() -> set[str]:
    """The units of the source tree: its top-level modules and packages."""
    found = {
        p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    return (found - {"__init__"}) | {ROOT}


def _upward() -> list[str]:
    """What each import that does not point to a lower layer does wrong, one line each."""
    problems = []
    for a, b, where in _edges():
        if b == ROOT:
            problems.append(f"{where}: the root package `senet` sits above every unit; import from the unit itself")
        elif b not in LEVEL:
            problems.append(f"{where}: no unit {b!r} in LAYERS (a name that is not a senet module?)")
        elif a in LEVEL and LEVEL[b] >= LEVEL[a]:
            problems.append(f"{where}: layer {LEVEL[a]} ({a}) imports layer {LEVEL[b]} ({b})")
    return problems


def _cycles(edges: list[tuple[str, str, str]]) -> list[str]:
    """The nodes that lie on a cycle of the graph ``edges``."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n == goal:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False

    return sorted(n for n in graph if reaches(n, n))


def test_every_unit_has_a_layer():
    units = _units()
    assert units <= set(LEVEL), (
        f"units without a layer (add them to LAYERS and docs/architecture.md): {units - set(LEVEL)}"
    )


def test_no_stale_layers():
    stale = set(LEVEL) - _units()
    assert not stale, f"LAYERS names units that are not in src/senet (remove them there and in the docs): {stale}"


def test_imports_point_down():
    problems = _upward()
    assert not problems, "imports that do not point to a lower layer:\n" + "\n".join(problems)


def test_no_cycles_between_units():
    cycles = _cycles(_edges())
    assert not cycles, f"units on an import cycle: {cycles}"


def test_no_cycles_between_modules():
    edges = _module_edges()
    cycles = _cycles(edges)
    where = [w for a, b, w in edges if a in cycles and b in cycles]
    assert not cycles, f"modules on an import cycle: {cycles}\n" + "\n".join(where)


# -- the checker itself, on small made-up trees -------------------------------------------------------------------


def _tree(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    fake = tmp_path / "senet"
    for name, text in {"__init__.py": "", **files}.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    monkeypatch.setattr(__import__(__name__), "SRC", fake)


@pytest.mark.parametrize(
    ("bad", "unit"),
    [
        ("from ..training import train", "training"),
        ("from senet.cli import main", "cli"),
        ("import senet", ROOT),
        ("import senet.training", "training"),
        ("importlib.import_module('senet.training')", "training"),
        ("__import__('senet.cli.main')", "cli"),
        ("from senet import train", ROOT),
        ("from senet import training", "training"),
    ],
)
def test_the_check_finds_an_upward_import(tmp_path, monkeypatch, bad, unit):
    """A models file that imports a higher layer (lazily) is reported, with a message that says why."""
    _tree(
        tmp_path, monkeypatch, {"models/x.py": f"import importlib\n\ndef f():\n    {bad}\n", "training/__init__.py": ""}
    )
    assert [(a, b) for a, b, _ in _edges()] == [("models", unit)]
    (problem,) = _upward()
    assert "models/x.py:4" in problem
    if unit == ROOT:
        assert "root package" in problem


def test_the_check_names_an_unknown_unit(tmp_path, monkeypatch):
    _tree(tmp_path, monkeypatch, {"models/x.py": "from senet.trainer import fit\n"})
    assert _upward() == [
        "senet/models/x.py:1 imports senet.trainer: no unit 'trainer' in LAYERS (a name that is not a senet module?)"
    ]


def test_the_check_finds_a_stale_layer(tmp_path, monkeypatch):
    _tree(tmp_path, monkeypatch, {"models/__init__.py": ""})
    assert "layers" in set(LEVEL) - _units()


def test_the_check_finds_a_cycle_inside_a_unit(tmp_path, monkeypatch):
    """The cycle senet.layers had (se → fast; fast → fused inside functions; fused → se inside `use_triton`)."""
    _tree(
        tmp_path,
        monkeypatch,
        {
            "layers/__init__.py": "from .se import SqueezeExcite\n",
            "layers/se.py": "from . import fast\n\nclass SqueezeExcite: ...\n",
            "layers/fast.py": "def choose():\n    from . import fused\n",
            "layers/fused.py": "def use_triton():\n    from .se import SqueezeExcite\n",
        },
    )
    assert _edges() == []  # all inside one unit: the unit-level checks see nothing
    assert _cycles(_module_edges()) == ["senet.layers.fast", "senet.layers.fused", "senet.layers.se"]


@pytest.mark.slow
def test_import_senet_leaves_the_heavy_optional_libraries_unimported():
    """`senet --help` and every command start by importing the package: torchvision (1.5 s on 2 cores, through
    torch._dynamo), timm, onnx and matplotlib are imported by the functions that use them, not by `import senet`."""
    import os
    import subprocess
    import sys

    heavy = ("torchvision", "timm", "onnx", "onnxruntime", "matplotlib", "tensorboard")
    code = f"import sys, senet, senet.cli; print(*[m for m in {heavy!r} if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.split() == []
