"""The layout's rules, read from the source: one-way app imports, no import cycles, no
private names borrowed across modules, modules of a readable size.

Every import counts wherever it is written: at module level, inside a function, under
`if TYPE_CHECKING:`. A lazy import hides a dependency from the import system, not from the
reader, so it is no way around a rule. `import a.b` and `from a import b` (b a module) are
edges to the module `a.b`; relative imports are resolved against the importing module.

Each rule has a self-test on a synthetic snippet first, so a checker that finds nothing
because it reads nothing fails too.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "console",
    "accounts",
    "incidents",
    "rollbacks",
    "statuspage",
    "postmortems",
    "playbooks",
    "alerts",
    "api",
    "executors",
    "devinfra",
    "bench",
    "tests",
)
SKIPPED_DIRECTORIES = {"migrations", ".venv", "__pycache__"}

# A module longer than this is doing several things; split it by responsibility.
MAX_LINES = 600
MAX_TEST_LINES = 700


@dataclass(frozen=True)
class Module:
    """One source file of ours: its dotted name, its path from the root, its text."""

    name: str
    path: str
    source: str
    is_package: bool = False

    @property
    def package(self) -> str:
        """The package a relative import in this module is resolved against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def top(self) -> str:
        return self.name.partition(".")[0]


@dataclass(frozen=True)
class Import:
    """One module an import statement brings in. `target` is a module of ours when `ours`,
    else the top-level name of the outside package."""

    importer: Module
    line: int
    statement: str
    target: str
    ours: bool
    names: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.importer.path}:{self.line}: {self.statement}"

    @property
    def target_top(self) -> str:
        return self.target.partition(".")[0]


def modules_from_disk(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Module]:
    """Every `.py` file of our packages, migrations and virtualenvs left out."""
    sources: dict[str, str] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if not SKIPPED_DIRECTORIES.intersection(relative.parts):
                sources[relative.as_posix()] = path.read_text()
    return modules_from_sources(sources)


def modules_from_sources(sources: Mapping[str, str]) -> dict[str, Module]:
    """Modules from `{"pkg/mod.py": "source"}`: the files on disk, or the self-tests'
    synthetic snippets."""
    found: dict[str, Module] = {}
    for path, source in sources.items():
        parts = path.removesuffix(".py").split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, source, is_package)
    return found


@functools.cache
def _tree(module: Module) -> ast.Module:
    return ast.parse(module.source, module.path)


@functools.cache
def project_modules() -> dict[str, Module]:
    """Our modules as they are on disk, read once for all the tests here."""
    return modules_from_disk()


@functools.cache
def project_imports() -> list[Import]:
    return all_imports(project_modules())


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _ours(name: str, modules: Mapping[str, Module]) -> str | None:
    """The deepest module of ours that `name` (a dotted module path) names, if any."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: Module, modules: Mapping[str, Module]) -> list[Import]:
    """The modules `module` imports, one Import per module brought in, wherever the
    statement is written."""
    found: list[Import] = []
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                statement = f"import {alias.name}"
                target = _ours(alias.name, modules)
                if target is None:
                    found.append(Import(module, node.lineno, statement, alias.name, False))
                else:
                    found.append(Import(module, node.lineno, statement, target, True))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, node)
            statement = ast.unparse(node)
            package = _ours(source, modules)
            if package is None:
                names = tuple(alias.name for alias in node.names)
                found.append(Import(module, node.lineno, statement, source, False, names))
                continue
            from_package: list[str] = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    found.append(Import(module, node.lineno, statement, submodule, True))
                else:
                    from_package.append(alias.name)
            if from_package:
                found.append(
                    Import(module, node.lineno, statement, package, True, tuple(from_package))
                )
    return sorted(found, key=lambda imported: imported.line)


def all_imports(modules: Mapping[str, Module]) -> list[Import]:
    return [found for module in modules.values() for found in imports_of(module, modules)]


# --- import cycles ------------------------------------------------------------------------


def import_cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """One cycle, as the chain of imports that closes it, for every group of our modules
    that import each other (every strongly connected component of more than one module)."""
    edges: dict[str, dict[str, Import]] = {}
    for found in imports:
        if found.ours and found.target != found.importer.name:
            edges.setdefault(found.importer.name, {}).setdefault(found.target, found)

    # Tarjan's algorithm, iterative: the graph is deep enough to trouble the recursion limit.
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = lowlink[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges.get(successor, {})))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    cycles: list[list[Import]] = []
    for component in sorted(components):
        members = set(component)
        start = component[0]
        # Breadth-first from the component's first module back to itself: a shortest cycle.
        came_from: dict[str, Import] = {}
        frontier = [start]
        while frontier and start not in came_from:
            following: list[str] = []
            for node in frontier:
                for successor, found in sorted(edges.get(node, {}).items()):
                    if successor in members and successor not in came_from:
                        came_from[successor] = found
                        following.append(successor)
            frontier = following
        chain: list[Import] = []
        node = start
        while True:
            found = came_from[node]
            chain.append(found)
            node = found.importer.name
            if node == start:
                break
        cycles.append(list(reversed(chain)))
    return cycles


def describe_cycle(chain: list[Import]) -> str:
    path = " -> ".join([chain[0].importer.name, *(found.target for found in chain)])
    steps = "\n".join(f"    {found.where}" for found in chain)
    return f"{path}\n{steps}"


def test_cycle_finder_reports_a_two_module_cycle() -> None:
    modules = modules_from_sources(
        {
            "app/__init__.py": "",
            "app/a.py": "from app.b import thing\n",
            "app/b.py": "def late():\n    from . import a\n",
            "app/c.py": "import app.a\n",
        }
    )

    cycles = import_cycles(all_imports(modules))

    assert [describe_cycle(chain) for chain in cycles] == [
        "app.a -> app.b -> app.a\n"
        "    app/a.py:1: from app.b import thing\n"
        "    app/b.py:2: from . import a"
    ]


def test_cycle_finder_passes_an_acyclic_graph() -> None:
    modules = modules_from_sources(
        {"app/__init__.py": "", "app/a.py": "import app.b\n", "app/b.py": "import os\n"}
    )

    assert import_cycles(all_imports(modules)) == []


def test_no_import_cycles_between_our_modules() -> None:
    cycles = [describe_cycle(chain) for chain in import_cycles(project_imports())]

    assert not cycles, "Modules that import each other:\n" + "\n".join(cycles)


# --- layering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """What the modules of one package may import. `forbidden` lists top-level packages
    they must not import; when `only_ours` is set, they may import no package of ours
    outside it."""

    package: str
    forbidden: frozenset[str] = frozenset()
    only_ours: frozenset[str] | None = None

    def breaks(self, found: Import) -> bool:
        if found.importer.top != self.package:
            return False
        top = found.target_top
        if top in self.forbidden or any(top.startswith(f"{name}_") for name in self.forbidden):
            return True
        return self.only_ours is not None and found.ours and top not in self.only_ours


LAYERS = (
    # The incident record is the lowest app: the later apps build on it, never the reverse.
    Layer(
        "incidents",
        forbidden=frozenset(
            {"rollbacks", "statuspage", "postmortems", "playbooks", "api", "alerts"}
        ),
    ),
    # Rollbacks tell the status page and post-mortems about runs through signals.
    Layer("rollbacks", forbidden=frozenset({"statuspage", "postmortems", "playbooks", "api"})),
    # Playbooks draft plans through rollbacks; nothing else needs them.
    Layer("playbooks", forbidden=frozenset({"statuspage", "postmortems", "api"})),
    # The API is a door onto the services, like the pages: nothing below calls it. It opens
    # onto the status page's services too (components, maintenances, templates).
    Layer("api", forbidden=frozenset({"postmortems", "playbooks"})),
    # Alerts open and join incidents; only the API's door calls them.
    Layer(
        "alerts",
        forbidden=frozenset({"rollbacks", "statuspage", "postmortems", "playbooks", "api"}),
    ),
    # Backends take plain config: no Django (nor django_* add-ons), none of our apps.
    Layer("executors", forbidden=frozenset({"django"}), only_ours=frozenset({"executors"})),
    # The stand-ins for infrastructure serve the backends, not the console.
    Layer("devinfra", only_ours=frozenset({"devinfra", "executors"})),
    # Signing in knows the roles, nothing of what they do.
    Layer(
        "accounts",
        forbidden=frozenset({"rollbacks", "statuspage", "postmortems", "playbooks", "api"}),
    ),
    # Two views over the same record: neither needs the other.
    Layer("statuspage", forbidden=frozenset({"postmortems", "playbooks", "api"})),
    Layer("postmortems", forbidden=frozenset({"statuspage", "playbooks", "api"})),
)


def layer_violations(imports: Iterable[Import], layers: Iterable[Layer] = LAYERS) -> list[str]:
    layers = list(layers)
    return [
        f"{found.where}  ({layer.package} may not import {found.target_top})"
        for found in imports
        for layer in layers
        if layer.breaks(found)
    ]


def test_layering_flags_an_upward_import_inside_a_function() -> None:
    modules = modules_from_sources(
        {
            "low/__init__.py": "",
            "low/models.py": "def later():\n    from high.views import page\n",
            "high/__init__.py": "",
            "high/views.py": "from low import models\n",
            "infra/__init__.py": "",
            "infra/backend.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    import django.conf\n"
                "from . import helpers\nimport low\n"
            ),
            "infra/helpers.py": "",
        }
    )
    layers = (
        Layer("low", forbidden=frozenset({"high"})),
        Layer("infra", forbidden=frozenset({"django"}), only_ours=frozenset({"infra"})),
    )

    assert layer_violations(all_imports(modules), layers) == [
        "low/models.py:2: from high.views import page  (low may not import high)",
        "infra/backend.py:3: import django.conf  (infra may not import django)",
        "infra/backend.py:5: import low  (infra may not import low)",
    ]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.package)
def test_apps_import_one_way(layer: Layer) -> None:
    violations = layer_violations(project_imports(), [layer])

    assert not violations, "Imports against the app layering:\n" + "\n".join(violations)


# --- private names ------------------------------------------------------------------------


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_bindings(module: Module, modules: Mapping[str, Module]) -> dict[str, str]:
    """Names a module binds to modules of ours: `import a.b` binds `a`, `import a.b as m`
    binds `m`, `from a import b` binds `b` when `a.b` is a module."""
    bound: dict[str, str] = {}
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name, modules) is None:
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
    return bound


def _dotted(node: ast.expr, bound: Mapping[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, bound)
        return f"{base}.{node.attr}" if base else None
    return None


_ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "delattr", "hasattr"}
_PATCH_FUNCTIONS = {"patch"}


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _private_uses(module: Module, modules: Mapping[str, Module]) -> list[tuple[int, str, str]]:
    """(line, what is written, the module whose private name it is) for `x._y`, for
    `setattr(x, "_y", ...)` and its kin (monkeypatch's too), and for
    `patch("x._y")`, where x is another module of ours."""
    bound = _module_bindings(module, modules)
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(_tree(module)):
        owner: str | None = None
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = _dotted(node.value, bound)
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.id if isinstance(function, ast.Name) else None
            if isinstance(function, ast.Attribute):
                called = function.attr
            first = node.args[0]
            if called in _ATTRIBUTE_FUNCTIONS and len(node.args) > 1:
                name = _string(node.args[1])
                if name and _is_private(name):
                    owner = _dotted(first, bound)
            elif called in _PATCH_FUNCTIONS and (target := _string(first)):
                path, _, name = target.rpartition(".")
                if _is_private(name) and path in modules:
                    owner = path
        if owner in modules and owner != module.name:
            found.append((node.lineno, ast.unparse(node), owner))
    return sorted(found)


def private_name_violations(modules: Mapping[str, Module]) -> list[str]:
    """Private names of another module of ours that a module imports or reaches into."""
    found: list[str] = []
    for module in modules.values():
        for imported in imports_of(module, modules):
            if not imported.ours or imported.target == module.name:
                continue
            for name in imported.names:
                if _is_private(name):
                    found.append(f"{imported.where}  ({name} is private to {imported.target})")
        for line, written, owner in _private_uses(module, modules):
            found.append(f"{module.path}:{line}: {written}  (private to {owner})")
    return found


def test_private_name_check_flags_imports_and_attribute_access() -> None:
    modules = modules_from_sources(
        {
            "app/__init__.py": "",
            "app/services.py": "_lock = object()\n__all__ = ['_lock']\n",
            "app/views.py": (
                "from app.services import _lock, __all__\n"
                "from os import _exit\n"
                "from . import services\n"
                "import app.services as svc\n"
                "services._lock\nsvc.__all__\n"
                "def later(monkeypatch, patch):\n"
                "    monkeypatch.setattr(svc, '_lock', None)\n"
                "    patch('app.services._lock')\n"
                "    getattr(services, 'lock')\n"
                "    return app.services._lock\n"
                "import app\n"
            ),
        }
    )

    assert private_name_violations(modules) == [
        "app/views.py:1: from app.services import _lock, __all__"
        "  (_lock is private to app.services)",
        "app/views.py:5: services._lock  (private to app.services)",
        "app/views.py:8: monkeypatch.setattr(svc, '_lock', None)  (private to app.services)",
        "app/views.py:9: patch('app.services._lock')  (private to app.services)",
        "app/views.py:11: app.services._lock  (private to app.services)",
    ]


def test_no_private_names_used_across_modules() -> None:
    violations = private_name_violations(project_modules())

    assert not violations, (
        "A name another module uses is public: give it a proper name and a docstring.\n"
        + "\n".join(violations)
    )


# --- module size --------------------------------------------------------------------------


def line_limit(module: Module) -> int:
    """How long a module may grow: the infrastructure stand-ins too, which mimic whole APIs
    in modules split by part of the API."""
    if module.top == "tests":
        return MAX_TEST_LINES
    return MAX_LINES


def size_violations(modules: Mapping[str, Module]) -> list[str]:
    found: list[str] = []
    for module in modules.values():
        limit = line_limit(module)
        lines = len(module.source.splitlines())
        if lines > limit:
            found.append(f"{module.path}: {lines} lines (limit {limit})")
    return found


def test_size_check_flags_a_long_module() -> None:
    modules = modules_from_sources(
        {
            "app/long.py": "x = 1\n" * (MAX_LINES + 1),
            "app/short.py": "x = 1\n" * MAX_LINES,
            "tests/test_long.py": "x = 1\n" * (MAX_TEST_LINES + 1),
            "tests/test_short.py": "x = 1\n" * MAX_TEST_LINES,
            "devinfra/standin.py": "x = 1\n" * (MAX_LINES + 1),
        }
    )

    assert size_violations(modules) == [
        f"app/long.py: {MAX_LINES + 1} lines (limit {MAX_LINES})",
        f"tests/test_long.py: {MAX_TEST_LINES + 1} lines (limit {MAX_TEST_LINES})",
        f"devinfra/standin.py: {MAX_LINES + 1} lines (limit {MAX_LINES})",
    ]


def test_modules_stay_under_their_size_limit() -> None:
    violations = size_violations(project_modules())

    assert not violations, "Modules to split by responsibility:\n" + "\n".join(violations)


def test_the_walk_reads_every_package() -> None:
    modules = project_modules()

    assert {module.top for module in modules.values()} == set(PACKAGES)
    assert not [name for name in modules if ".migrations" in name]
    assert "rollbacks.models" in modules
