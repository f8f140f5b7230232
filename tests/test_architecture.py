"""The package's folders are its layers (docs/architecture.md): every import points down, no import circles,
no private names across modules, no old module paths inside axhw.

The graph is read from the source with ``ast`` (every import statement, function-level ones included, as
they run too), so a new upward import or circle fails here before it confuses a reader.
``python tests/test_architecture.py [ROOT]`` prints the graph's numbers (modules, folders, arrows, circles,
upward arrows) for any checkout, the figures quoted in docs/architecture.md.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Bottom to top. A module may import its own package, or any package of a lower layer; packages that
#: share a layer are independent of each other. ``axhw`` itself (the public facade) sits above ``nn``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("axhw._compat", "axhw.common"),
    ("axhw.arith", "axhw.data"),
    ("axhw.golden",),
    ("axhw.nn",),
    ("axhw",),
    ("axhw.training",),
    ("axhw.approxann",),
    ("axhw.rtl",),
    ("axhw.power",),
    ("axhw.apps", "axhw.examples"),
)


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    private: list[str] = field(default_factory=list)  # "module:line imports other._name"
    imported: dict[str, set[str]] = field(default_factory=dict)  # every axhw module path each module names


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT) -> Graph:
    """Modules of ``root/axhw`` and their imports of each other (``from pkg import submodule`` is an arrow to
    the submodule; ``from pkg import name`` to the package)."""
    g = Graph()
    for path in sorted((root / "axhw").rglob("*.py")):
        g.modules[_module_name(path, root)] = path
    for name, path in g.modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        named: set[str] = set()
        aliases: dict[str, str] = {}  # local name -> axhw module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "axhw" or a.name.startswith("axhw."):
                        named.add(a.name)
                        if a.name in g.modules:
                            edges.add(a.name)
                            if a.asname:
                                aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not (target == "axhw" or target.startswith("axhw.")):
                    continue
                named.add(target)
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in g.modules:
                        edges.add(sub)
                        named.add(sub)
                        aliases[a.asname or a.name] = sub
                    else:
                        if target in g.modules:
                            edges.add(target)
                        if a.name.startswith("_") and not a.name.startswith("__") and target != name:
                            g.private.append(f"{name}:{node.lineno} imports {target}.{a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                g.private.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
        edges.discard(name)
        g.edges[name] = edges
        g.imported[name] = named
    return g


def circles(g: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g.modules):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, package) of a module: its longest matching package prefix in :data:`LAYERS`."""
    best: tuple[int, str] | None = None
    for i, packages in enumerate(LAYERS):
        for p in packages:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    if best is None:
        raise AssertionError(f"{module} is in no layer of LAYERS: add its package there and to docs/architecture.md")
    return best


def upward(g: Graph) -> list[str]:
    """Arrows to a higher layer, or to another package of the same layer."""
    bad = []
    for a, targets in g.edges.items():
        la, pa = layer_of(a)
        for b in sorted(targets):
            lb, pb = layer_of(b)
            if lb > la or (lb == la and pa != pb):
                bad.append(f"{a} -> {b} ({pa} is layer {la}, {pb} is layer {lb})")
    return bad


def summary(root: Path = ROOT) -> dict[str, int]:
    g = import_graph(root)
    root_modules = [m for m in g.modules if m.count(".") == 1 and g.modules[m].name != "__init__.py"]
    packages = [m for m, p in g.modules.items() if p.name == "__init__.py" and m != "axhw"]
    cyc = circles(g)
    in_cycle = {m for c in cyc for m in c}
    return {
        "modules": len(g.modules),
        "modules_at_root": len(root_modules),
        "packages": len(packages),
        "arrows": sum(len(e) for e in g.edges.values()),
        "circles": len(cyc),
        "modules_in_circles": len(in_cycle),
        "arrows_within_circles": sum(1 for a, es in g.edges.items() for b in es if a in in_cycle and b in in_cycle),
        "private_imports": len(g.private),
    }


# --------------------------------------------------------------------------- the checks
def test_every_module_has_a_layer() -> None:
    for m in import_graph().modules:
        layer_of(m)


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_every_import_points_down() -> None:
    assert upward(import_graph()) == []


def test_no_private_names_across_modules() -> None:
    assert import_graph().private == []


def test_no_old_module_paths_inside_axhw() -> None:
    from axhw._compat import MOVED

    g = import_graph()
    old = sorted(f"{m} imports {n}" for m, names in g.imported.items() for n in names if n in MOVED)
    assert old == []


def test_checks_catch_a_circle_an_upward_import_and_a_private_name(tmp_path: Path) -> None:
    """The checks above can fail: on a small tree with one of each defect they report exactly those."""
    pkg = tmp_path / "axhw"
    for sub in ("common", "arith", "nn"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "common" / "a.py").write_text("from axhw.common import b\n")
    (pkg / "common" / "b.py").write_text("import axhw.common.a\n")
    (pkg / "arith" / "x.py").write_text("from axhw.nn.y import f\n")
    (pkg / "nn" / "y.py").write_text("from axhw.arith.x import _secret\ndef f(): pass\n")
    g = import_graph(tmp_path)
    assert sorted(circles(g)) == [["axhw.arith.x", "axhw.nn.y"], ["axhw.common.a", "axhw.common.b"]]
    assert upward(g) == ["axhw.arith.x -> axhw.nn.y (axhw.arith is layer 1, axhw.nn is layer 3)"]
    assert g.private == ["axhw.nn.y:1 imports axhw.arith.x._secret"]


def test_old_module_paths_still_import_with_a_warning() -> None:
    """One release of grace for users' imports (the moved modules are aliases, not copies)."""
    import importlib
    import warnings

    import pytest

    from axhw._compat import MOVED

    for old, new in MOVED.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            alias = importlib.import_module(old)
        real = importlib.import_module(new)
        public = getattr(real, "__all__", [n for n in vars(real) if not n.startswith("_")])
        for name in public:
            assert getattr(alias, name) is getattr(real, name), (old, name)
        sys.modules.pop(old, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from axhw.train import TrainConfig  # a class pickled under its old path resolves to the new one
    from axhw.training.trainer import TrainConfig as New

    assert TrainConfig is New



def test_old_script_paths_still_run() -> None:
    """``python -m axhw.cli`` and ``python -m axhw.lutkernel`` (the old kernel build) run the new code."""
    import subprocess

    for old, expect in (("axhw.cli", "axhw "), ("axhw.lutkernel", "axhw LUT kernel")):
        proc = subprocess.run([sys.executable, "-m", old, *(["--version"] if old == "axhw.cli" else [])],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        assert expect in proc.stdout + proc.stderr



def test_old_convert_module_path_leaves_axhw_convert_callable() -> None:
    """``import axhw.convert`` (the old module) binds the alias onto the package, where ``axhw.convert`` is the
    public function: the alias converts when called."""
    import subprocess

    code = ("import warnings; warnings.simplefilter('ignore'); import axhw, axhw.convert; from torch import nn; "
            "from axhw.nn import HardwareConfig; m, r = axhw.convert(nn.Sequential(nn.Linear(2, 2)), HardwareConfig()); "
            "print(type(m[0]).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ApproxLinear", proc.stderr


if __name__ == "__main__":
    import json

    print(json.dumps(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT), indent=1))
