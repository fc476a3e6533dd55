"""The package's import graph: layers only import downward and no module imports itself back through others.

Walks every module of ``caduceus_plugin`` with :mod:`ast` (top-level and function-level imports alike: a lazy
import is still a dependency) and checks each edge against :data:`LAYERS`. Two modules may import each other's
layer only downward; within one rank only inside the same group (a job never imports another job; HyenaDNA never
imports Caduceus; the gReLU host never imports the kipoi host). The package ``__init__`` is the façade Python
runs before any submodule, and ``_legacy`` maps the 0.1 paths onto the new ones: both are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "caduceus_plugin"

#: (module prefix, rank, group): the longest matching prefix decides. Lower ranks are lower layers.
LAYERS: list[tuple[str, float, str]] = [
    ("caduceus_plugin.errors", 0, "base"),
    ("caduceus_plugin.fileio", 0, "base"),
    ("caduceus_plugin.settings", 0.5, "settings"),
    ("caduceus_plugin.sequence", 1, "sequence"),
    ("caduceus_plugin.genome", 2, "genome"),
    ("caduceus_plugin.ops", 3, "ops"),
    ("caduceus_plugin.ops.scan", 3.1, "ops.scan"),  # the interface over the kernels
    ("caduceus_plugin.ops.gemm", 2.9, "ops.gemm"),  # which library multiplies (settings only)
    ("caduceus_plugin.ops.mixer", 3.2, "ops.mixer"),  # the mixer between its projections, over scan and conv
    ("caduceus_plugin.models", 4, "models"),
    ("caduceus_plugin.models.caduceus", 4.1, "models.caduceus"),
    ("caduceus_plugin.models.hyenadna", 4.1, "models.hyenadna"),
    ("caduceus_plugin.registry", 5, "registry"),
    ("caduceus_plugin.registry.components", 5.1, "registry.components"),
    ("caduceus_plugin.data", 6, "data"),
    ("caduceus_plugin.demo_data", 6, "demo_data"),
    ("caduceus_plugin.hosts.grelu", 7, "hosts.grelu"),
    ("caduceus_plugin.hosts.kipoi", 7, "hosts.kipoi"),
    ("caduceus_plugin.hosts", 7.1, "hosts"),
    ("caduceus_plugin.jobs", 8, "jobs"),  # the shared pieces: predictor, outputs
    ("caduceus_plugin.jobs.predict", 8.1, "jobs.predict"),
    ("caduceus_plugin.jobs.variants", 8.1, "jobs.variants"),
    ("caduceus_plugin.jobs.pretrain", 8.1, "jobs.pretrain"),
    ("caduceus_plugin.jobs.bench", 8.2, "jobs.bench"),  # runs the other jobs side by side
    ("caduceus_plugin.compat", 8.5, "compat"),  # the authors' API on our modules
    ("caduceus_plugin.cli", 9, "cli"),
    ("caduceus_plugin.cli", 9.1, "cli.main"),
    ("=caduceus_plugin.cli", 9.2, "cli.init"),  # "=": this module only (the package's __init__)
    ("caduceus_plugin.cli.__main__", 9.2, "cli.init"),
]
EXEMPT = ("caduceus_plugin", "caduceus_plugin._legacy")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a package: the deepest known module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(name: str, layers: list[tuple[str, float, str]]) -> tuple[float, str]:
    exact = [p for p in layers if p[0] == "=" + name]
    best = exact[0] if exact else max(
        (p for p in layers if name == p[0] or name.startswith(p[0] + ".")), key=lambda p: len(p[0]), default=None
    )
    if best is None:
        raise AssertionError(f"module {name} is in no layer: add it to LAYERS in tests/test_layout.py")
    return best[1], best[2]


def layering_violations(graph: dict[str, set[str]], layers: list[tuple[str, float, str]],
                        exempt: tuple[str, ...] = EXEMPT) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        if src in exempt:
            continue
        rank, group = layer_of(src, layers)
        for dst in sorted(targets - set(exempt)):
            dst_rank, dst_group = layer_of(dst, layers)
            if dst_rank > rank or (dst_rank == rank and dst_group != group):
                bad.append(f"{src} (layer {rank} {group}) imports {dst} (layer {dst_rank} {dst_group})")
    return bad


def cycles(graph: dict[str, set[str]], exempt: tuple[str, ...] = EXEMPT) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    nodes = [n for n in graph if n not in exempt]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w in exempt or w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for n in nodes:
        if n not in index:
            visit(n)
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_layers_import_only_downward() -> None:
    assert layering_violations(import_graph(PACKAGE), LAYERS) == []


def test_every_module_is_in_a_layer() -> None:
    for name in package_modules(PACKAGE):
        if name not in EXEMPT:
            layer_of(name, LAYERS)


def _toy_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "caduceus_plugin"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_checker_fails_on_a_deliberate_cycle_and_an_upward_import(tmp_path: Path) -> None:
    pkg = _toy_package(tmp_path, {
        "__init__.py": "",
        "sequence.py": "from caduceus_plugin.genome import fasta\n",  # upward: sequence < genome
        "genome/__init__.py": "",
        "genome/fasta.py": "def f():\n    from caduceus_plugin.genome import vcf  # lazy imports count\n",
        "genome/vcf.py": "from caduceus_plugin.genome.fasta import f\n",  # fasta -> vcf -> fasta
        "jobs/__init__.py": "",
        "jobs/predict.py": "",
        "jobs/variants.py": "from caduceus_plugin.jobs.predict import x\n",  # a job importing another job
    })
    graph = import_graph(pkg)
    assert cycles(graph) == [["caduceus_plugin.genome.fasta", "caduceus_plugin.genome.vcf"]]
    bad = layering_violations(graph, LAYERS)
    assert any(b.startswith("caduceus_plugin.sequence ") and "genome.fasta" in b for b in bad)
    assert any(b.startswith("caduceus_plugin.jobs.variants ") for b in bad)
    assert len(bad) == 2


@pytest.mark.parametrize("src", ["from . import b\n", "from .b import g\n"])
def test_relative_imports_are_resolved(tmp_path: Path, src: str) -> None:
    pkg = _toy_package(tmp_path, {"__init__.py": "", "ops/__init__.py": "", "ops/a.py": src, "ops/b.py": "g = 1\n"})
    assert import_graph(pkg)["caduceus_plugin.ops.a"] == {"caduceus_plugin.ops.b"}


def legacy_imports(root: Path) -> list[str]:
    """Imports inside the package that go through a 0.1 path (``caduceus_plugin._legacy.MOVED``).

    Those names exist only once ``_legacy`` is installed, which ``import caduceus_plugin`` does after the gReLU hook:
    a module reached from the hook that imports an old name fails when gReLU was imported first.
    """
    from caduceus_plugin._legacy import MOVED

    modules = package_modules(root)
    bad = []
    for name, path in modules.items():
        if name in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad += [f"{name} imports {n} (now {MOVED[n]})" for n in names if n in MOVED]
    return bad


def test_the_package_never_imports_its_own_old_paths() -> None:
    assert legacy_imports(PACKAGE) == []


def test_old_path_checker_catches_one(tmp_path: Path) -> None:
    pkg = _toy_package(tmp_path, {"__init__.py": "", "registry/__init__.py": "",
                                  "registry/components.py": "from caduceus_plugin import hookspecs, settings\n"})
    assert legacy_imports(pkg) == ["caduceus_plugin.registry.components imports caduceus_plugin.hookspecs "
                                   "(now caduceus_plugin.registry.hookspecs)"]


def test_grelu_imported_before_the_plugin() -> None:
    """A gReLU user's script: ``import grelu.lightning`` first, then ours; the hook registers at once."""
    import subprocess
    import sys

    code = ("import grelu.lightning, grelu.model.models as M\nimport caduceus_plugin\n"
            "assert hasattr(M, 'CaduceusPSModel') and hasattr(M, 'caduceus_ps'), dir(M)\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
