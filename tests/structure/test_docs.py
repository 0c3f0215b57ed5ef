"""Tier 1: the docs stay honest. Every relative link of README.md, docs/*.md and
tests/README.md resolves (the file, and the heading anchor in GitHub's slug form), and so
does every docs/<page>.md[#anchor] a shipped module names; every test docs/guarantees.md
names exists, and its table names at least one test per promise."""

import ast
import glob
import os
import re
from typing import Dict, List, Optional, Set, Tuple
from urllib.parse import unquote

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.functions

DOC_FILES = ("README.md", "tests/README.md", "docs/*.md")
# Every module under these names docs pages (benchmarks/ is not shipped but names them too).
CODE_DIRS = ("beam_jobs", "transforms", "schemas", "training", "flex_templates", "datagen",
             "benchmarks")
GUARANTEES = "docs/guarantees.md"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*$")
_HTML_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""", re.I)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
_ABSOLUTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)
_MODULE_REF = re.compile(r"\bdocs/([A-Za-z0-9_-]+\.md)(#[A-Za-z0-9_-]+)?")
_TEST_NAME = re.compile(r"`(tests/[A-Za-z0-9_/]+\.py)(?:::([A-Za-z0-9_]+))?`")


# ---------------------------------------------------------------------- markdown

def outside_fences(text: str) -> List[Tuple[int, str]]:
    """(line number, line) of every line not inside a fenced code block."""
    kept, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        found = _FENCE.match(line)
        if fence is None:
            if found:
                fence = found.group(1)
            else:
                kept.append((number, line))
        elif found and found.group(1)[0] == fence[0] and len(found.group(1)) >= len(fence) \
                and not line.strip()[len(found.group(1)):].strip():
            fence = None
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the text as rendered (links by their text, code
    spans by their content), lowercased, every character but letters, digits, '_', '-'
    and spaces removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> Set[str]:
    """Every anchor of a Markdown text: its headings' slugs (a repeated slug gets -1, -2,
    ... in order, as on GitHub) and explicit <a name|id="..."> anchors."""
    found, seen = set(), {}
    for _, line in outside_fences(text):
        heading = _HEADING.match(line)
        if heading:
            title = re.sub(r"[ \t]+#+$", "", heading.group(2))   # a closing sequence
            base = slug(title)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(_HTML_ID.findall(line))
    return found


def links(text: str) -> List[Tuple[int, str]]:
    """(line number, target) of every relative link or image of a Markdown text: inline
    and reference definitions, outside fenced code blocks and code spans; absolute URLs
    (a scheme, or //host) are left out."""
    found = []
    for number, line in outside_fences(text):
        plain = _CODE_SPAN.sub("", line)
        targets = _INLINE_LINK.findall(plain)
        reference = _REFERENCE_LINK.match(plain)
        if reference:
            targets.append(reference.group(1))
        found += [(number, t) for t in targets if not _ABSOLUTE.match(t)]
    return found


def module_refs(source: str) -> List[Tuple[int, str]]:
    """(line number, 'docs/<page>.md[#anchor]') of every docs page a module's text names."""
    return [(number, m.group(0)) for number, line in enumerate(source.splitlines(), 1)
            for m in _MODULE_REF.finditer(line)]


# ---------------------------------------------------------------------- resolving

def resolve(base_dir: str, target: str, root: str, cache: Dict[str, Set[str]]) -> Optional[str]:
    """Why `target` (relative to base_dir, inside root) does not resolve, or None."""
    path, _, anchor = target.partition("#")
    path = unquote(path)
    full = os.path.normpath(os.path.join(base_dir, path)) if path else None
    if full is not None:
        if not (full == root or full.startswith(root + os.sep)):
            return "points outside the repository"
        if not os.path.exists(full):
            return "no such file"
    if not anchor:
        return None
    page = full if full is not None else None
    if page is None or not page.endswith(".md") or not os.path.isfile(page):
        return None if page is not None else "an anchor of what?"
    if page not in cache:
        with open(page, encoding="utf-8") as handle:
            cache[page] = anchors(handle.read())
    return None if unquote(anchor) in cache[page] else f"no heading #{anchor} in " \
        f"{os.path.relpath(page, root)}"


def doc_files(root: str) -> List[str]:
    return sorted({path for pattern in DOC_FILES
                   for path in glob.glob(os.path.join(root, pattern))})


def code_files(root: str) -> List[str]:
    return sorted(path for folder in CODE_DIRS
                  for path in glob.glob(os.path.join(root, folder, "**", "*.py"),
                                        recursive=True))


def broken_links(root: str) -> List[str]:
    """'file:line: target (why)' for every link of the docs and every docs page a module
    names that does not resolve."""
    root, broken, cache = os.path.abspath(root), [], {}
    for path in doc_files(root):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        # Same-page anchors (#x) resolve against this page.
        for number, target in links(text):
            why = resolve(os.path.dirname(path), target if not target.startswith("#")
                          else os.path.basename(path) + target, root, cache)
            if why:
                broken.append(f"{os.path.relpath(path, root)}:{number}: {target} ({why})")
    for path in code_files(root):
        with open(path, encoding="utf-8") as handle:
            refs = module_refs(handle.read())
        for number, target in refs:
            why = resolve(root, target, root, cache)
            if why:
                broken.append(f"{os.path.relpath(path, root)}:{number}: {target} ({why})")
    return broken


# ---------------------------------------------------------------------- guarantees

def guarantee_rows(text: str) -> List[Tuple[str, List[str]]]:
    """(promise, test names) of each row of the first table under a '|' header whose
    first column is 'promise'; names are 'tests/.../x.py' or 'tests/.../x.py::name'."""
    rows, in_table = [], False
    for _, line in outside_fences(text):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] \
            if line.lstrip().startswith("|") else None
        if cells is None:
            if in_table:
                break
            continue
        if not in_table:
            in_table = cells[0].lower() == "promise"
            continue
        if set(cells[0]) <= set("-: "):
            continue
        tests = " | ".join(cells[1:])
        rows.append((cells[0], [f"{m.group(1)}::{m.group(2)}" if m.group(2) else m.group(1)
                                for m in _TEST_NAME.finditer(tests)]))
    return rows


def functions_of(source: str) -> Set[str]:
    """Names of every function (module level, in classes, nested) of a module."""
    return {node.name for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def missing_tests(names: List[str], root: str) -> List[str]:
    missing, parsed = [], {}
    for name in names:
        path, _, function = name.partition("::")
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            missing.append(f"{name} (no such file)")
            continue
        if function:
            if full not in parsed:
                with open(full, encoding="utf-8") as handle:
                    parsed[full] = functions_of(handle.read())
            if function not in parsed[full]:
                missing.append(f"{name} (no such test in {path})")
    return missing


# ---------------------------------------------------------------------- the checks

def test_every_link_resolves():
    broken = broken_links(ROOT)
    assert broken == [], "links that do not resolve:\n  " + "\n  ".join(broken)


def test_every_test_the_guarantees_name_exists():
    with open(os.path.join(ROOT, GUARANTEES), encoding="utf-8") as handle:
        rows = guarantee_rows(handle.read())
    names = [name for _, tests in rows for name in tests]
    assert len(rows) >= 20, f"{GUARANTEES}: only {len(rows)} rows parsed from its table"
    assert len(names) >= len(rows)
    assert [promise for promise, tests in rows if not tests] == []
    missing = missing_tests(names, ROOT)
    assert missing == [], f"{GUARANTEES} names tests that do not exist:\n  " + \
        "\n  ".join(missing)


# ---------------------------------------------------------------------- the functions

@pytest.mark.parametrize("heading, expected", [
    ("At 10^9 events, on paper", "at-109-events-on-paper"),
    ("The article index: append-only and versioned", "the-article-index-append-only-and-versioned"),
    ("The day: TFDV statistics, drift and the gate", "the-day-tfdv-statistics-drift-and-the-gate"),
    ("`LATEST`", "latest"),
    ("preprocessing_fn", "preprocessing_fn"),
    ("Publishing: retry-safe, one protocol", "publishing-retry-safe-one-protocol"),
    ("Run [a job](x.md) now", "run-a-job-now"),
    ("Déjà vu", "déjà-vu"),
])
def test_slug(heading, expected):
    assert slug(heading) == expected


def test_anchors_number_repeated_headings_and_skip_fences():
    text = "\n".join([
        "# Title", "## Setup", "text", "## Setup", "### Setup ##",
        "```sh", "# not a heading", "```", "~~~", "## Also not", "~~~",
        '<a name="kept"></a>', "#no-space is not a heading"])
    assert anchors(text) == {"title", "setup", "setup-1", "setup-2", "kept"}


def test_links_skip_code_and_absolute_urls():
    text = "\n".join([
        "See [a](a.md), [b](docs/b.md#part) and ![img](img/x.png).",
        "Not `[code](c.md)`, not [web](https://example.com/x.md) or [mail](mailto:x@y).",
        "```", "[fenced](f.md)", "```",
        "[same page](#here) [ref]: not at the line start",
        "[label]: ref/target.md#t"])
    assert links(text) == [(1, "a.md"), (1, "docs/b.md#part"), (1, "img/x.png"),
                           (6, "#here"), (7, "ref/target.md#t")]


def test_module_refs():
    source = 'X = 1\n"""Wired here (docs/features.md#the-features-gate); docs/publishing.md.\n'
    assert module_refs(source) == [(2, "docs/features.md#the-features-gate"),
                                   (2, "docs/publishing.md")]


def write(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_broken_links_names_a_missing_page_a_missing_anchor_and_a_module_ref(tmp_path):
    write(tmp_path, "README.md", "[ok](docs/a.md#at-109-events) [gone](docs/none.md)\n"
                                 "[bad anchor](docs/a.md#nowhere) [here](#readme)\n# README\n")
    write(tmp_path, "docs/a.md", "# A\n## At 10^9 events\n[back](../README.md#readme)\n"
                                 "[self](#a) [lost](#b)\n")
    write(tmp_path, "tests/README.md", "[up](../docs/a.md)\n")
    write(tmp_path, "transforms/m.py", '"""See docs/a.md#a and docs/b.md."""\n')
    assert broken_links(str(tmp_path)) == [
        "README.md:1: docs/none.md (no such file)",
        "README.md:2: docs/a.md#nowhere (no heading #nowhere in docs/a.md)",
        "docs/a.md:4: #b (no heading #b in docs/a.md)",
        "transforms/m.py:1: docs/b.md (no such file)"]


def test_guarantee_rows_and_missing_tests(tmp_path):
    text = "\n".join([
        "# G", "| promise | tests |", "|---|---|",
        "| one | `tests/x/test_a.py::test_one`, `tests/x/test_b.py` (all of it) |",
        "| two | none named |", "", "| promise | tests |", "|---|---|", "| later | `tests/z.py` |"])
    assert guarantee_rows(text) == [("one", ["tests/x/test_a.py::test_one", "tests/x/test_b.py"]),
                                    ("two", [])]
    write(tmp_path, "tests/x/test_a.py", "class T:\n    def test_one(self):\n        pass\n")
    assert missing_tests(["tests/x/test_a.py::test_one", "tests/x/test_a.py::test_two",
                          "tests/x/test_b.py"], str(tmp_path)) == [
        "tests/x/test_a.py::test_two (no such test in tests/x/test_a.py)",
        "tests/x/test_b.py (no such file)"]
