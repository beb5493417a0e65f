"""Layers point one way (issue 15): no domain app imports apps.api, apps import each other without a circle, and the
close is built on invoicing's services, never the reverse.

Every module under apps/ is parsed with `ast`. An import inside a function counts like one at the top of the
module: a lazy import only moves a circle's failure from import time to call time, and a reader still has to
follow it.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The staff UI (admin modules) and the command line (management commands) are entry points, like apps.api: Django
# loads them (admin autodiscovery, manage.py) and no module imports them, so they may show or drive any app (the
# customer's page lists its invoices; seed_demo fills every app) without taking part in a circle. Checked below:
# nothing imports them.
ENTRY_POINTS = ("admin", "management")

# Imports the check between apps leaves out, each with why (between modules nothing is left out). Every one makes
# a circle of apps a reader still follows, so the list stays as short as it can; an allowance whose import is gone
# fails `test_every_allowance_is_still_used`.
ALLOWED_IMPORTS: dict[tuple[str, str], str] = {
    # The migration from Lago is transitional: while Lago still bills a service the close skips it, finalization
    # keeps a dual run's invoices as shadow copies and webhooks stay silent. Those reads of the migration's phase
    # table sit in apps/migration/hooks.py, which imports nothing that leads back (no circle of modules); the
    # edges go with the app after the cutover. Inverting them would leave permanent machinery for a temporary app.
    ("apps.invoicing.close.planning", "apps.migration.hooks"): "the close skips services Lago still bills",
    ("apps.invoicing.services", "apps.migration.hooks"): "a dual run's invoices are finalized as shadow copies",
    ("apps.webhooks.services", "apps.migration.hooks"): "no webhook while Lago still tells the service's apps",
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. "apps.invoicing.services"
    target: str  # imported module, e.g. "apps.payments.services"
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "apps").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> list[Import]:
    """Every import of an apps module by an apps module, at any depth of the file, resolved to the module it loads."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from x import y` loads x.y when y is a module, else x.
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("apps.") else None
                if target and target != module:
                    found.append(Import(module, target, node.lineno))
    return found


def _app(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _is_entry_point(module: str) -> bool:
    return len(module.split(".")) > 2 and module.split(".")[2] in ENTRY_POINTS


def _cycle(edges: dict[str, dict[str, Import]]) -> list[str] | None:
    """Return one cycle of the graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _describe(cycle: list[str], edges: dict[str, dict[str, Import]]) -> str:
    return "\n".join(f"  {edges[a][b]}" for a, b in zip(cycle, cycle[1:]))


MODULES = _modules()
IMPORTS = _imports(MODULES)


def _app_edges() -> dict[str, dict[str, Import]]:
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in IMPORTS:
        source, target = _app(imp.source), _app(imp.target)
        if source != target and not _is_entry_point(imp.source) and (imp.source, imp.target) not in ALLOWED_IMPORTS:
            edges[source].setdefault(target, imp)
    return edges


def test_the_parser_sees_lazy_and_relative_imports():
    """The graph is only as good as the parser: a function-level import and a relative one are both edges."""
    seen = {(imp.source, imp.target) for imp in IMPORTS}
    assert ("apps.invoicing.close.writing", "apps.invoicing.services") in seen  # relative, `from ..services import`
    assert ("apps.payments.services", "apps.payments.events") in seen  # `from . import events`
    lazy = [imp for imp in IMPORTS if imp.source == "apps.integrity.services" and _app(imp.target) == "apps.ledger"]
    assert lazy, "a function-level import is an edge too"


def test_no_app_but_the_api_imports_the_api():
    offenders = [str(imp) for imp in IMPORTS if _app(imp.target) == "apps.api" and _app(imp.source) != "apps.api"]
    assert not offenders, (
        "apps.api is the HTTP layer on top; render Lago bodies with <app>/representations.py instead:\n  "
        + "\n  ".join(offenders)
    )


def test_nothing_imports_an_entry_point():
    offenders = [str(imp) for imp in IMPORTS if _is_entry_point(imp.target) and _app(imp.source) != _app(imp.target)]
    offenders += [str(imp) for imp in IMPORTS if _is_entry_point(imp.target) and not _is_entry_point(imp.source)]
    assert not offenders, "admin and management modules are entry points; move what they share into services:\n  " + (
        "\n  ".join(offenders)
    )


def test_apps_import_each_other_without_a_circle():
    edges = _app_edges()
    cycle = _cycle(edges)
    assert cycle is None, (
        f"import circle between apps: {' -> '.join(cycle)}\n{_describe(cycle, edges)}\n"
        "Point the edge down the layers (apps.core < customers < catalog < webhooks, ledger < subscriptions < usage"
        " < invoicing < payments < migration, integrity, api): move the code to the app that owns it, pass data in,"
        " or let the higher app register a listener (subscriptions/lifecycle.py); see ALLOWED_IMPORTS for the few kept."
    )


def test_every_allowance_is_still_used():
    """An allowance outliving its import would let a new circle through unnoticed."""
    assert not set(ALLOWED_IMPORTS) - {(imp.source, imp.target) for imp in IMPORTS}


def test_modules_import_each_other_without_a_circle():
    """Inside an app too (services <-> tasks was one): enqueue tasks by name, see apps.core.queue."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in IMPORTS:
        edges[imp.source].setdefault(imp.target, imp)
    cycle = _cycle(edges)
    assert cycle is None, f"import circle: {' -> '.join(cycle)}\n{_describe(cycle, edges)}"


def test_the_close_builds_on_invoicing_services_never_the_reverse():
    close = [module for module in MODULES if module.startswith("apps.invoicing.close")]
    assert any(imp.target == "apps.invoicing.services" for imp in IMPORTS if imp.source in close)
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in IMPORTS:
        edges[imp.source].add(imp.target)
    reached, todo = set(), ["apps.invoicing.services"]
    while todo:
        module = todo.pop()
        for target in edges[module] - reached:
            reached.add(target)
            todo.append(target)
    assert not reached & set(close), (
        "apps.invoicing.services reaches the close: " + ", ".join(sorted(reached & set(close)))
    )


def _tasks_defined() -> set[str]:
    names = set()
    for module, path in MODULES.items():
        if module.endswith(".tasks"):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.FunctionDef) and any(
                    "shared_task" in ast.unparse(decorator) for decorator in node.decorator_list
                ):
                    names.add(f"{module}.{node.name}")
    return names


def test_every_task_sent_by_name_exists():
    """Services send their own app's tasks by name (apps.core.queue), as the beat schedule does: a renamed task would
    otherwise fail only when sent."""
    pattern = re.compile(r"^apps\.\w+\.tasks\.\w+$")
    named: dict[str, str] = {}
    for path in [*MODULES.values(), ROOT / "nexabilling" / "settings.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value):
                named.setdefault(node.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    assert any(where.startswith("apps/ledger/services.py") for where in named.values())  # the scan sees them
    missing = {name: where for name, where in named.items() if name not in _tasks_defined()}
    assert not missing, f"no such task: {missing}"
    # Registered at startup, not only once something happened to import the tasks module: the app's AppConfig.ready
    # imports it (a web process never imports a tasks module otherwise).
    sent_from_apps = {name.rpartition(".")[0] for name, where in named.items() if where.startswith("apps/")}
    unregistered = {tasks for tasks in sent_from_apps if (_app(tasks) + ".apps", tasks) not in
                    {(imp.source, imp.target) for imp in IMPORTS}}
    assert not unregistered, f"import these in their AppConfig.ready: {sorted(unregistered)}"
