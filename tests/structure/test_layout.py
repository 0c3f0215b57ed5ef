"""Tier 1: the house's structure. Every shipped module's imports (function-level ones
included) form no cycle; stage packages import only what their __init__ allows;
function-level imports are kept for heavy libraries only; modules stay short; the
distribution ships every package folder."""

import ast
import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.functions

SHIPPED = ("beam_jobs", "transforms", "schemas", "flex_templates", "training", "datagen")
# Libraries a function may import for itself: each keeps TensorFlow (or a cloud client)
# out of pipeline construction or out of the graph job's process.
HEAVY = ("tensorflow", "tensorflow_transform", "tensorflow_data_validation",
         "tensorflow_metadata", "tfx_bsl", "google.cloud", "google.protobuf", "googleapiclient",
         "google.auth", "google.api_core", "keras", "matplotlib")
# Stage packages and what each may import of the other stage packages (common,
# publishing and schemas are open to all; common and publishing import no stage).
STAGES = ("common", "publishing", "ingest", "graph", "examples", "features")
ALLOWED = {
    "common": set(),
    "publishing": {"transforms.common"},
    "ingest": {"transforms.common", "transforms.publishing"},
    "graph": {"transforms.common", "transforms.publishing", "transforms.ingest.read"},
    "examples": {"transforms.common", "transforms.publishing", "transforms.ingest.read",
                 "transforms.graph.index_store", "transforms.graph.sessions"},
    "features": {"transforms.common", "transforms.publishing", "transforms.ingest.read",
                 "transforms.ingest.day_files", "transforms.graph.index_store", "transforms.graph.sessions"},
}
MAX_LINES = 500
MAX_JOB_LINES = 220
LONGER = {"beam_jobs/options.py": 500}


def module_files():
    for top in SHIPPED:
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
    edges = {}
    for module, path in MODULES.items():
        targets = set()
        for name, _, _ in imports_of(path, module):
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


def test_stage_packages_import_only_what_they_may():
    wrong = []
    for module, targets in suite_edges().items():
        parts = module.split(".")
        if parts[0] != "transforms" or len(parts) < 3 or parts[1] not in STAGES:
            continue
        stage = parts[1]
        for target in targets:
            t = target.split(".")
            if t[0] in ("beam_jobs", "flex_templates", "training", "datagen"):
                wrong.append(f"{module} -> {target}")
            elif t[0] == "transforms" and len(t) > 1 and t[1] != stage:
                if not any(target == a or target.startswith(a + ".") for a in ALLOWED[stage]):
                    wrong.append(f"{module} -> {target}")
    assert sorted(wrong) == []


def test_function_level_imports_are_heavy_libraries_only():
    wrong = []
    for module, path in MODULES.items():
        for name, line, in_function in imports_of(path, module):
            if in_function and not any(name == h or name.startswith(h + ".") for h in HEAVY):
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} {name}")
    assert wrong == []


def test_modules_are_short():
    long = []
    for module, path in MODULES.items():
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        limit = LONGER.get(rel, MAX_JOB_LINES if rel.startswith("beam_jobs/") else MAX_LINES)
        n = sum(1 for _ in open(path, encoding="utf-8"))
        if n > limit:
            long.append(f"{rel}: {n} lines > {limit}")
    assert long == []


def test_every_stage_package_says_what_it_holds_and_may_import():
    for stage in STAGES:
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
               for module, path in MODULES.items() if path.endswith("__init__.py")}
    assert folders and folders <= shipped, sorted(folders - shipped)
