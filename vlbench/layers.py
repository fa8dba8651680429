"""The layer map of vlbench and a scan of the package's own imports against it.

A module may import from its own layer or a lower one, never a higher one; no two units of the map (and
no two modules) import each other; no module imports another module's ``_private`` name. What a lower
layer needs from a higher one is passed in (a callback, or a ``typing.Protocol`` defined low).
``tests/test_layers.py`` keeps the package to this shape; ``python -m vlbench.layers --mermaid`` draws the
real package-level import graph for docs/architecture.md.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

# Top to bottom. A unit is a package or a module; a module belongs to the longest unit that prefixes it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vlbench.cli", "vlbench.__main__"),
    ("vlbench.executors", "vlbench.protocols"),
    ("vlbench.runner",),
    ("vlbench.plan",),
    ("vlbench.tasks", "vlbench.peft", "vlbench.robustness"),
    ("vlbench.training", "vlbench.distributed"),
    ("vlbench.models",),
    ("vlbench.data",),
    ("vlbench.results", "vlbench.metrics"),
    ("vlbench.specs", "vlbench.registry", "vlbench.builtins", "vlbench.errors", "vlbench.io", "vlbench.locks",
     "vlbench.failures", "vlbench.progress", "vlbench.layers", "vlbench"),
)
LAYER_NAMES = ("cli", "executors and protocols", "runner", "plan", "tasks and peft", "training",
               "models", "data", "results and metrics", "foundation")


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` (a module) imports ``target`` (a module), at ``path``:``line``."""

    source: str
    target: str
    path: Path
    line: int
    name: Optional[str] = None  # the name taken from ``target`` when it is not itself a module
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: a layer dependency, but never run


@dataclass(frozen=True)
class Violation:
    """One breach of the map: its kind (upward, cycle, private, unmapped), where, and what."""

    kind: str
    path: Path
    line: int
    source: str
    target: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.detail}"


def unit_of(module: str) -> Optional[str]:
    """The unit of the map that ``module`` belongs to (the longest one prefixing it), or None."""
    best = None
    for units in LAYERS:
        for unit in units:
            inside = module == unit or (unit != "vlbench" and module.startswith(unit + "."))
            if inside and (best is None or len(unit) > len(best)):
                best = unit
    return best


def layer_of(module: str) -> Optional[int]:
    """The index of ``module``'s layer in :data:`LAYERS` (0 is the top), or None when it is not mapped."""
    unit = unit_of(module)
    return None if unit is None else next(i for i, units in enumerate(LAYERS) if unit in units)


def module_files(root: Path, package: str = "vlbench") -> dict[str, Path]:
    """Every module of ``package`` (a folder under ``root``) by dotted name; a package is its ``__init__``."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _resolve_relative(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def scan_file(module: str, path: Path, modules: Iterable[str], package: str = "vlbench",
              shown: Optional[Path] = None) -> list[Edge]:
    """The imports of one module into ``package`` (at any depth, lazy ones too), resolved to modules.

    ``shown`` is the path that the edges report (default ``path``).
    """
    known = set(modules)
    tree = ast.parse(path.read_text(), filename=str(path))
    path = shown or path
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for child in node.body for inner in ast.walk(child)}
    edges = []
    for node in ast.walk(tree):
        typing = id(node) in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    edges.append(Edge(module, alias.name, path, node.lineno, typing_only=typing))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                origin = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
            else:
                origin = node.module or ""
            if origin != package and not origin.startswith(package + "."):
                continue
            for alias in node.names:
                child = f"{origin}.{alias.name}"
                if child in known:
                    edges.append(Edge(module, child, path, node.lineno, typing_only=typing))
                else:
                    edges.append(Edge(module, origin, path, node.lineno, alias.name, typing))
    edges.extend(_private_attributes(module, path, tree, known))
    return edges


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _private_attributes(module: str, path: Path, tree: ast.AST, known: set[str]) -> list[Edge]:
    """``m._name`` where ``m`` is bound to a module of the package by an import in this file."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in known:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    edges = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in bound:
            target = ".".join([bound[value.id]] + chain)
            if target in known:
                edges.append(Edge(module, target, path, node.lineno, node.attr))
    return edges


def scan(root: Path, package: str = "vlbench") -> list[Edge]:
    """Every import of ``package`` into itself, for the tree under ``root``."""
    files = module_files(root, package)
    return [edge for module, path in files.items()
            for edge in scan_file(module, path, files, package, path.relative_to(root))]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _private_owner(edge: Edge) -> Optional[str]:
    """The module or package whose private part ``edge`` takes, or None when it takes nothing private."""
    parts = edge.target.split(".") + ([edge.name] if edge.name else [])
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:i])
    return None


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of ``graph`` with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def unit_graph(edges: Iterable[Edge]) -> dict[str, set[str]]:
    """Which unit of the map imports which other unit."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        source, target = unit_of(edge.source), unit_of(edge.target)
        if source and target and source != target:
            graph.setdefault(source, set()).add(target)
    return graph


def check_tree(root: Path, package: str = "vlbench") -> list[Violation]:
    """Every breach of the map in the package under ``root``, modules outside every layer included."""
    files = module_files(root, package)
    return check(scan(root, package), {module: path.relative_to(root) for module, path in files.items()})


def check(edges: list[Edge], modules: Optional[dict[str, Path]] = None) -> list[Violation]:
    """Every breach of the map among ``edges``: upward imports, cycles, private names, unmapped modules.

    ``modules`` (dotted name -> file) adds the modules that no layer holds, whether or not they import.
    """
    found = [Violation("unmapped", path, 1, module, module, f"{module} is in no layer of vlbench.layers.LAYERS")
             for module, path in (modules or {}).items() if layer_of(module) is None]
    for edge in edges:
        source_layer, target_layer = layer_of(edge.source), layer_of(edge.target)
        for module, layer in ((edge.source, source_layer), (edge.target, target_layer)):
            if layer is None:
                found.append(Violation("unmapped", edge.path, edge.line, edge.source, edge.target,
                                       f"{module} is in no layer of vlbench.layers.LAYERS"))
        if source_layer is not None and target_layer is not None and target_layer < source_layer:
            found.append(Violation("upward", edge.path, edge.line, edge.source, edge.target,
                                   f"{edge.source} ({LAYER_NAMES[source_layer]}) imports {edge.target} "
                                   f"({LAYER_NAMES[target_layer]}), a higher layer"))
        owner = _private_owner(edge)
        if owner is not None and edge.source != owner and not edge.source.startswith(owner + "."):
            taken = f"{edge.target}.{edge.name}" if edge.name else edge.target
            found.append(Violation("private", edge.path, edge.line, edge.source, edge.target,
                                   f"{edge.source} uses {taken}, private to {owner}"))
    found.extend(_cycles(edges, unit_of, "units"))
    found.extend(_cycles(edges, lambda module: module, "modules"))
    return sorted(set(found), key=lambda v: (str(v.path), v.line, v.kind, v.target))


def _cycles(edges: list[Edge], node_of, what: str) -> list[Violation]:
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if _counts_for_cycles(edge, node_of, what):
            graph.setdefault(node_of(edge.source), set()).add(node_of(edge.target))
    found = []
    for component in _strongly_connected(graph):
        names = " <-> ".join(sorted(component))
        for edge in edges:
            if (_counts_for_cycles(edge, node_of, what) and node_of(edge.source) in component
                    and node_of(edge.target) in component):
                found.append(Violation("cycle", edge.path, edge.line, edge.source, edge.target,
                                       f"{edge.source} imports {edge.target}: a cycle between {what} {names}"))
    return found


def _counts_for_cycles(edge: Edge, node_of, what: str) -> bool:
    source, target = node_of(edge.source), node_of(edge.target)
    if not source or not target or source == target:
        return False
    if what == "modules":
        # Between modules only what runs counts: a package's __init__ importing its submodules re-exports
        # them, and an annotation-only import under TYPE_CHECKING never executes.
        return not edge.typing_only and not target.startswith(source + ".")
    return True


def mermaid(edges: Iterable[Edge], foundation_arrows: bool = False) -> str:
    """A Mermaid flowchart of the unit-level import graph, one subgraph per layer, top to bottom.

    Every layer may import the foundation, so arrows into it are left out unless ``foundation_arrows``;
    an upward arrow is drawn dashed.
    """
    graph = unit_graph(edges)
    if not foundation_arrows:
        graph = {source: {t for t in targets if layer_of(t) != len(LAYERS) - 1} for source, targets in graph.items()}
    used = set(unit_graph(edges)) | {target for targets in unit_graph(edges).values() for target in targets}
    lines = ["flowchart TD"]
    for i, units in enumerate(LAYERS):
        present = [unit for unit in units if unit in used]
        if present:
            lines.append(f'  subgraph L{i}["{i}: {LAYER_NAMES[i]}"]')
            lines.extend(f'    {_node(unit)}["{unit}"]' for unit in present)
            lines.append("  end")
    for source in sorted(graph):
        for target in sorted(graph[source]):
            arrow = "-.->" if (layer_of(target) or 0) < (layer_of(source) or 0) else "-->"
            lines.append(f"  {_node(source)} {arrow} {_node(target)}")
    return "\n".join(lines)


def _node(unit: str) -> str:
    return unit.replace(".", "_")


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m vlbench.layers [--mermaid [--foundation]]``: list the breaches of the map, or draw the graph."""
    args = sys.argv[1:] if argv is None else argv
    unknown = [arg for arg in args if arg not in ("--mermaid", "--foundation")]
    if unknown:
        print(f"error: unknown argument {unknown[0]!r} (use --mermaid, --mermaid --foundation, or nothing)",
              file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    if "--mermaid" in args:
        print(mermaid(scan(root), foundation_arrows="--foundation" in args))
        return 0
    violations = check_tree(root)
    for violation in violations:
        print(violation)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
