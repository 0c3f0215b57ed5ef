"""Tier 1: the house's structure. Every module's imports (function-level ones included)
form no cycle and follow the one-way flow of MAY_IMPORT (jobs -> stage packages ->
publishing / common -> schemas; training, datagen, flex_templates and benchmarks placed
in it too); function-level imports are kept for heavy libraries only; modules stay
short; the distribution ships every package folder."""

import ast
import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.tiers import tier_problems

pytestmark = pytest.mark.functions

SHIPPED = ("beam_jobs", "transforms", "schemas", "flex_templates", "training", "datagen")
# Walked for the flow of imports too, though not shipped: scripts that import siblings by
# bare name (benchmarks/ is put on sys.path by each script).
WALKED = SHIPPED + ("benchmarks",)
# Libraries a function may import for itself: each keeps TensorFlow (or a cloud client)
# out of pipeline construction or out of the graph job's process.
HEAVY = ("tensorflow", "tensorflow_transform", "tensorflow_data_validation",
         "tensorflow_metadata", "tfx_bsl", "google.cloud", "google.protobuf", "googleapiclient",
         "google.auth", "google.api_core", "keras", "matplotlib")

# What each part of the repository may import of the suite besides itself. A part is a
# stage package (transforms.<stage>), a job module (beam_jobs.<job>) or a top-level
# folder; an entry allows a part, a package or one module. Data flows one way:
# jobs -> stage packages (ingest, graph, examples, features) -> publishing / common ->
# schemas; each package's __init__.py says the same in words. Nothing imports tests/ or
# benchmarks/ but benchmarks/ itself.
STAGES = ("ingest", "graph", "examples", "features")
BASE = {"schemas", "transforms.common"}
LOWER = BASE | {"transforms.publishing"}
# What one stage may take from another: the readers of a day and of the article index,
# and the sessions every stage cuts alike.
SHARED_BY_STAGES = {"transforms.ingest.read", "transforms.graph.index_store",
                    "transforms.graph.sessions"}
JOB = LOWER | {f"transforms.{stage}" for stage in STAGES} | {"beam_jobs.options",
                                                              "beam_jobs.launch",
                                                              "transforms.report"}
MAY_IMPORT = {
    "schemas": set(),
    "transforms": set(),
    "transforms.common": {"schemas"},
    "transforms.publishing": BASE,
    "transforms.ingest": LOWER,
    "transforms.graph": LOWER | {"transforms.ingest.read"},
    "transforms.examples": LOWER | SHARED_BY_STAGES,
    "transforms.features": LOWER | SHARED_BY_STAGES | {"transforms.ingest.day_files"},
    # The report reads what every stage published; no stage imports it.
    "transforms.report": LOWER | {"transforms.ingest.day_files", "transforms.graph.index_store"},
    "beam_jobs": set(),
    "beam_jobs.options": BASE,
    "beam_jobs.launch": BASE,
    # A job module imports another only to reuse its read step (validate_events) or its
    # stage wiring; the daily job wires all four stages.
    "beam_jobs.validate_events": JOB,
    "beam_jobs.cooccurrence_graph": JOB | {"beam_jobs.validate_events"},
    "beam_jobs.training_examples": JOB | {"beam_jobs.validate_events",
                                          "beam_jobs.cooccurrence_graph"},
    "beam_jobs.features": JOB | {"beam_jobs.validate_events", "beam_jobs.cooccurrence_graph"},
    "beam_jobs.daily": JOB | {"beam_jobs.validate_events", "beam_jobs.cooccurrence_graph",
                              "beam_jobs.training_examples", "beam_jobs.features"},
    "beam_jobs.report": JOB,
    "beam_jobs.rewrite_stats": JOB,
    # The trainers' side reads published days and the index; it never runs a job.
    "training": LOWER | {"transforms.graph.index_store"},
    "datagen": BASE,
    # Template metadata is generated from every job's option declarations.
    "flex_templates": {"beam_jobs", "schemas", "transforms.common", "transforms.ingest.read"},
    "benchmarks": {"beam_jobs", "transforms", "schemas", "training", "datagen"},
}
MAX_LINES = 500
MAX_JOB_LINES = 220
LONGER = {"beam_jobs/options.py": 500}


def module_files():
    for top in WALKED:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, ROOT)
                    module = rel[:-3].replace(os.sep, ".")
                    if module.endswith(".__init__"):
                        module = module[:-len(".__init__")]
                    yield module, path


MODULES = dict(module_files())
SHIPPED_MODULES = {m: p for m, p in MODULES.items() if m.split(".")[0] in SHIPPED}


def imports_of(path: str, module: str):
    """(imported module, line, at function level) of every import in a file; `from
    package import name` counts as package.name when that is a module."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([base] if base else []))
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    found.append((name if name in MODULES else base, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def suite_edges():
    """Module -> the suite's modules it imports (function level included); a benchmark's
    bare import of a sibling script counts as benchmarks.<sibling>, and an import of
    tests counts as tests."""
    edges = {}
    for module, path in MODULES.items():
        targets = set()
        for name, _, _ in imports_of(path, module):
            if module.startswith("benchmarks.") and f"benchmarks.{name}" in MODULES:
                name = f"benchmarks.{name}"
            if name == "tests" or name.startswith("tests."):
                targets.add("tests")
                continue
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan), or a module that
    imports itself."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_cycle_finder_finds_a_cycle_and_passes_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"a"}}) == [["a"]]


def test_no_import_cycle_in_the_shipped_code():
    assert cycles(suite_edges()) == []


def part_of(module: str) -> str:
    """The row of MAY_IMPORT a module falls under."""
    parts = module.split(".")
    if parts[0] in ("transforms", "beam_jobs") and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def against_the_flow(edges):
    """'module -> target' for every import the table does not allow, and 'module: no
    row' for a module whose part the table does not place."""
    wrong = []
    for module, targets in sorted(edges.items()):
        part = part_of(module)
        if part not in MAY_IMPORT:
            wrong.append(f"{module}: no row in MAY_IMPORT")
            continue
        allowed = MAY_IMPORT[part] | {part}
        wrong += [f"{module} -> {target}" for target in sorted(targets)
                  if not any(target == a or target.startswith(a + ".") for a in allowed)]
    return wrong


def test_the_flow_check_refuses_an_import_upstream_and_an_unplaced_module():
    assert against_the_flow({
        "transforms.common.span": {"schemas.contract"},
        "transforms.graph.pairs": {"transforms.common.columns", "transforms.examples.shard"},
        "transforms.examples.shard": {"transforms.graph.sessions", "transforms.graph.pairs"},
        "transforms.publishing.files": {"transforms.ingest.read"},
        "training.reader": {"beam_jobs.options", "transforms.graph.index_store"},
        "beam_jobs.validate_events": {"beam_jobs.daily", "transforms.ingest.read", "tests"},
        "beam_jobs.daily": {"beam_jobs.features"},
        "notebooks.look": {"schemas"},
    }) == ["beam_jobs.validate_events -> beam_jobs.daily",
           "beam_jobs.validate_events -> tests",
           "notebooks.look: no row in MAY_IMPORT",
           "training.reader -> beam_jobs.options",
           "transforms.examples.shard -> transforms.graph.pairs",
           "transforms.graph.pairs -> transforms.examples.shard",
           "transforms.publishing.files -> transforms.ingest.read"]


def test_the_table_itself_flows_one_way():
    parts = {part: {part_of(t) for t in allowed} - {part} for part, allowed in MAY_IMPORT.items()}
    assert cycles(parts) == []


def test_every_import_follows_the_flow():
    assert against_the_flow(suite_edges()) == []


def test_function_level_imports_are_heavy_libraries_only():
    wrong = []
    for module, path in SHIPPED_MODULES.items():
        for name, line, in_function in imports_of(path, module):
            if in_function and not any(name == h or name.startswith(h + ".") for h in HEAVY):
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} {name}")
    assert wrong == []


def test_modules_are_short():
    long = []
    for module, path in SHIPPED_MODULES.items():
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        limit = LONGER.get(rel, MAX_JOB_LINES if rel.startswith("beam_jobs/") else MAX_LINES)
        n = sum(1 for _ in open(path, encoding="utf-8"))
        if n > limit:
            long.append(f"{rel}: {n} lines > {limit}")
    assert long == []


def test_every_stage_package_says_what_it_holds_and_may_import():
    for stage in ("common", "publishing") + STAGES:
        doc = ast.get_docstring(ast.parse(open(os.path.join(
            ROOT, "transforms", stage, "__init__.py"), encoding="utf-8").read()))
        assert doc and "import" in doc.lower(), stage


def test_no_test_module_imports_another_test_module():
    wrong = []
    for folder, dirs, files in os.walk(os.path.join(ROOT, "tests")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                wrong += [f"{os.path.relpath(path, ROOT)} -> {n}" for n in names
                          if n.startswith("tests.") and not n.startswith("tests.helpers")]
    assert wrong == []


def test_the_wheel_ships_every_package_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), ROOT], check=True, capture_output=True)
    wheel, = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    shipped = {os.path.dirname(n) for n in zipfile.ZipFile(tmp_path / wheel).namelist()
               if n.endswith("/__init__.py")}
    folders = {os.path.dirname(os.path.relpath(path, ROOT)).replace(os.sep, "/")
               for module, path in SHIPPED_MODULES.items() if path.endswith("__init__.py")}
    assert folders and folders <= shipped, sorted(folders - shipped)


class _Item:
    def __init__(self, nodeid, *marks):
        self.nodeid, self._marks = nodeid, [pytest.Mark(m, (), {}) for m in marks]

    def iter_markers(self):
        return iter(self._marks)


def test_the_tier_check_refuses_a_test_with_no_tier_or_two():
    assert tier_problems([_Item("a::one", "functions"), _Item("a::none", "parametrize"),
                          _Item("a::two", "functions", "jobs"),
                          _Item("a::again", "jobs", "jobs")]) == [
        "a::none: tier markers none", "a::two: tier markers ['functions', 'jobs']"]
