"""Issue 27: imports run one way between the appliance's packages, and the site's verifier
stands alone.

Read from the source with ``ast``, nothing imported: every ``import`` counts, at module
level, inside a function or under ``TYPE_CHECKING``, because an import moved into a
function still ties the two packages together (it only hides the loop until it runs).
A package is the first name under ``appliance`` (``appliance/bundle/builder.py`` is in
``bundle``, ``appliance/definition.py`` is ``definition``).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "appliance"

#: Package loops that are known and owned: none. Nothing may form one.
ALLOWED_CYCLES: set[frozenset[str]] = set()

#: The site's verifier: what proves the media authentic and intact before anything
#: touches a host.
VERIFIER = "media"
#: What runs at the site from the media: the verifier, and the installer that uses it.
SITE_PACKAGES = (VERIFIER, "install")
#: Code that only the vendor's connected build machine runs: bundle definitions, SBOMs,
#: component builds, the bundle builder and media writers, the build cache and pruning
#: it, and the lab.
BUILD_MACHINE = ("bundle", "cache", "components", "definition", "lab", "prune", "sbom")
#: All the verifier may import of the appliance besides itself.
VERIFIER_MAY_IMPORT = {"_fsutil", "crypto", "errors"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """Every module of the appliance by dotted name (packages by their ``__init__``)."""
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _package(module: str) -> str:
    """``appliance.bundle.builder`` → ``bundle``; ``appliance`` itself → ``appliance``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """The appliance modules that ``module`` imports anywhere in its file, with the line."""
    modules = _modules()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "appliance" or alias.name.startswith("appliance."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base != "appliance" and not base.startswith("appliance."):
                continue
            for alias in node.names:
                # ``from appliance import prune`` imports a module, not a name of the root.
                child = f"{base}.{alias.name}"
                yield (child if child in modules else base), node.lineno


@cache
def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) → the places (file:line) that import."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for module, path in _modules().items():
        source = _package(module)
        for target, line in _imported(module, path):
            imported = _package(target)
            if imported != source:
                edges[source, imported].add(f"{path.relative_to(ROOT.parent).as_posix()}:{line}")
    return {edge: sorted(places) for edge, places in edges.items()}


def _cycles() -> set[frozenset[str]]:
    """Packages that import each other, directly or round a loop (Tarjan's SCCs)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in _edges():
        graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _explain(cycle: frozenset[str]) -> str:
    lines = [f"packages {sorted(cycle)} import each other:"]
    for (source, target), places in sorted(_edges().items()):
        if source in cycle and target in cycle:
            lines.append(f"  {source} -> {target}: {', '.join(places)}")
    return "\n".join(lines)


def test_no_package_imports_a_package_that_imports_it_back() -> None:
    """No loop between packages, counting imports inside functions; a loop is broken by
    moving what both need one floor down, never by an import inside a function."""
    unexpected = _cycles() - ALLOWED_CYCLES
    assert not unexpected, "\n".join(_explain(cycle) for cycle in sorted(unexpected, key=sorted))


@pytest.mark.parametrize("package", SITE_PACKAGES)
def test_the_site_imports_nothing_of_the_build_machine(package: str) -> None:
    """What runs at the site from the media (the verifier, the installer) never imports
    the vendor's build code, not even inside a function."""
    found = [
        f"{target}: {', '.join(places)}"
        for (source, target), places in sorted(_edges().items())
        if source == package and target in BUILD_MACHINE
    ]
    assert not found, f"appliance.{package} imports build-machine code:\n" + "\n".join(found)


def test_the_verifier_stands_alone() -> None:
    """The verifier imports only the error tree, atomic file helpers and the FIPS key
    policy of the appliance: adding to this list is a decision about what a site trusts."""
    found = {
        target: places
        for (source, target), places in _edges().items()
        if source == VERIFIER and target not in VERIFIER_MAY_IMPORT
    }
    assert not found, f"appliance.{VERIFIER} imports {found}"


def test_the_named_packages_exist() -> None:
    """The lists above name real packages, so a rename cannot empty a check silently."""
    packages = {_package(module) for module in _modules()}
    named = {VERIFIER, *SITE_PACKAGES, *BUILD_MACHINE, *VERIFIER_MAY_IMPORT}
    named |= {package for cycle in ALLOWED_CYCLES for package in cycle}
    assert named <= packages, f"not packages of appliance/: {sorted(named - packages)}"
    assert _edges(), "no imports found: the scan reads nothing"


# The README's map of the source tree (issue 27) names every package and top module, and
# marks as build-machine code exactly what the checks above call so.


def _mapped() -> dict[str, str]:
    """Path → where (build, site, both), from the README's source-tree table."""
    text = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## The source tree", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for row in re.findall(r"^\| (`.+?`) \| (\w+) \|", section, flags=re.MULTILINE):
        for path in re.findall(r"`([^`]+)`", row[0]):
            found[path] = row[1]
    return found


def test_the_readme_maps_every_package_and_module_of_the_tree() -> None:
    tree = {
        f"{p.name}/" if p.is_dir() else p.name
        for p in ROOT.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.name != "__init__.py")
    }
    mapped = _mapped()
    assert set(mapped) == tree, (
        f"missing from the README: {sorted(tree - set(mapped))}; "
        f"not in the tree: {sorted(set(mapped) - tree)}"
    )
    assert set(mapped.values()) <= {"build", "site", "both"}


def test_what_the_readme_calls_site_code_imports_nothing_of_the_build_machine() -> None:
    build = {
        path.rstrip("/").removesuffix(".py")
        for path, where in _mapped().items()
        if where == "build"
    }
    assert build == set(BUILD_MACHINE)
