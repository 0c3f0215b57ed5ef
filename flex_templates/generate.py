"""Flex Template metadata of every job, generated from its option declarations.

    python -m flex_templates.generate           write flex_templates/<job>/metadata.json
    python -m flex_templates.generate --check   exit 1 if a committed file is not current

A job is a module of beam_jobs that defines OPTION_CLASSES and run at its top level
(found by reading the sources, so a new job module gets its template without being
listed anywhere). Its description is DESCRIPTION, else its docstring's first
paragraph. Its parameters are the actions of the argparse parser that
beam_jobs.launch.job_parser builds from OPTION_CLASSES: name, help, default, type,
choices and boolean flags come from there, so nothing here lists the options a second time. type_formats() gives the regex of
each argparse type the options use (int, float, positive_int, positive_float,
shard_count, ...), so a new option declared with one of them needs nothing here.
formats() only adds what argparse cannot say about a value (its regex and the
console's input picker), keyed by name; a test checks that every key names a
declared option.

Every parameter gets at least one regex: a text option that neither formats() nor
its type describes gets _PLAIN_TEXT, which refuses control characters (a newline),
quotes, ';' and backslashes, so no parameter passes `x; DROP TABLE y` or
`' OR '1'='1` to a job. An option with a default gets defaultValue; an option with
choices is an ENUM with enumOptions.
"""

import argparse
import ast
import difflib
import importlib
import json
import os
import pkgutil
import re
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence

from beam_jobs import launch, options as opts
import beam_jobs
from schemas import contract
from transforms.ingest import read

HERE = os.path.dirname(os.path.abspath(__file__))
METADATA = "metadata.json"

_INT = r"^-?[0-9]+$"
_FLOAT = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_BOOL = r"^(true|false)$"
_POSITIVE_INT = r"^[1-9][0-9]*$"
# A number > 0 (a non-zero digit somewhere before the exponent; an exponent of at most
# two digits keeps it finite); positive_float is the final check.
_POSITIVE_FLOAT = (r"^([0-9]*[1-9][0-9]*\.?[0-9]*|[0-9]*\.[0-9]*[1-9][0-9]*)"
                   r"([eE][-+]?[0-9]{1,2})?$")
_SHARD_COUNT = r"^(auto|[1-9][0-9]*)$"
# A bucket name, then an object path of the characters this suite's paths use
# (dt=YYYY-MM-DD, file names); no space, quote, ';' or control character.
_GCS_PATH = r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[A-Za-z0-9._~=+@,/-]*)?"
_GCS = rf"^{_GCS_PATH}$"
# A file inside the image (an absolute path of the same safe characters).
_LOCAL_PATH = r"/[A-Za-z0-9._~=+@,/-]+"
_PLAIN_TEXT = r"^[^\x00-\x1f\x7f'\";\\`]*$"
_NON_NEGATIVE_INT = r"^[0-9]+$"
# (0, 1): a fraction with a non-zero digit.
_UNIT_FRACTION = r"^0?\.[0-9]*[1-9][0-9]*$"
# [0, 1].
_SHARE = r"^(0|0?\.[0-9]+|1|1\.0*|0\.)$"
_SECRET_VERSION = (r"^projects/[A-Za-z0-9_.:-]+/secrets/[A-Za-z0-9_-]+"
                   r"/versions/([1-9][0-9]*|latest)$")


class Format(NamedTuple):
    regexes: Sequence[str]
    param_type: str = "TEXT"


def _bigquery_table_pattern() -> str:
    """The reader's bq://project.dataset.table rule (bq:// included), without anchors
    and with plain groups: the regexes are checked by Dataflow, not by Python, and
    (?P<name>...) is Python's own syntax."""
    pattern = read._BQ_TABLE_RE.pattern.lstrip("^").rstrip("$")
    return re.sub(r"\(\?P<\w+>", "(", pattern)


def _event_weights_pattern() -> str:
    # Spaces around an item, never \s (which would let a newline through).
    item = r" *(%s):([0-9]+\.?[0-9]*|\.[0-9]+) *" % "|".join(
        re.escape(name) for name in contract.INTERACTION_EVENTS)
    return rf"^({item}(,{item})*)?$"


def formats() -> Dict[str, Format]:
    """Value formats argparse cannot express, by option name. On Dataflow the
    launcher and the workers see only gs:// and bq:// data (a local path would be
    inside the launcher's container), so paths are gs:// except the TFDV schema,
    which may also be a file shipped in the image."""
    kind = "(skipgram|sequences|ranking)"
    return {
        "events": Format([rf"^({_bigquery_table_pattern()}|{_GCS_PATH})$"]),
        "run_date": Format([r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|auto)$"]),
        "timezone": Format([r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"]),
        "output_dir": Format([_GCS], "GCS_WRITE_FOLDER"),
        "validated_events": Format([_GCS], "GCS_READ_FOLDER"),
        "index_from": Format([_GCS], "GCS_READ_FOLDER"),
        "tfdv_schema": Format([rf"^({_GCS_PATH}|{_LOCAL_PATH})$"], "GCS_READ_FILE"),
        "event_weights": Format([_event_weights_pattern()]),
        "user_id_salt_file": Format([_GCS], "GCS_READ_FILE"),
        "user_id_salt_secret": Format([_SECRET_VERSION]),
        "example_kinds": Format([rf"^{kind}(,{kind})*$"]),
        "daily_stages": Format([r"^(graph|examples|features)(,(graph|examples|features))*$"]),
    }


def type_formats() -> Dict[object, Format]:
    """Formats of the argparse types (the functions in `type=`) of the options, so that
    an option declared with one of them gets its regex without being named here. The
    regexes are matched against the whole value (a launcher's regex must match the
    value in its entirety)."""
    return {
        int: Format([_INT], "NUMBER"),
        float: Format([_FLOAT], "NUMBER"),
        opts.positive_int: Format([_POSITIVE_INT], "NUMBER"),
        opts.positive_float: Format([_POSITIVE_FLOAT], "NUMBER"),
        opts.shard_count: Format([_SHARD_COUNT]),
        opts.non_negative_int: Format([_NON_NEGATIVE_INT], "NUMBER"),
        opts.unit_fraction: Format([_UNIT_FRACTION], "NUMBER"),
        opts.share: Format([_SHARE], "NUMBER"),
    }


def top_level_names(source: str) -> set:
    """Names a module's source binds at its top level (assignments, defs, classes)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def job_modules() -> List[str]:
    """Names of the beam_jobs modules that are jobs (define OPTION_CLASSES and run at
    their top level), sorted. Read from the sources: nothing is imported to find them."""
    names = []
    for info in pkgutil.iter_modules(beam_jobs.__path__):
        path = os.path.join(beam_jobs.__path__[0], f"{info.name}.py")
        if info.ispkg or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            if {"OPTION_CLASSES", "run"} <= top_level_names(handle.read()):
                names.append(info.name)
    return sorted(names)


def job_description(module) -> str:
    """DESCRIPTION, else the first paragraph of the module's docstring."""
    if "DESCRIPTION" in vars(module):
        return module.DESCRIPTION
    first = (module.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(first.split()) or f"The {module.__name__} job."


def job_parser(job: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"beam_jobs.{job}")
    return launch.job_parser(f"python -m beam_jobs.{job}", module.OPTION_CLASSES,
                             job_description(module))


def option_actions(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    """The parser's options, in declaration order, without --help."""
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def is_boolean(action: argparse.Action) -> bool:
    """A flag (store_true/store_false) or an option whose values are booleans."""
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or \
        isinstance(action.const, bool) or isinstance(action.default, bool)


def parameter_name(action: argparse.Action) -> str:
    long_names = [s for s in action.option_strings if s.startswith("--")]
    return long_names[0][2:]


def _shown_default(action: argparse.Action) -> Optional[str]:
    default = action.default
    if default is None or default == "":
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def parameter(action: argparse.Action, required: bool,
              known_formats: Dict[str, Format],
              known_types: Optional[Dict[object, Format]] = None) -> Dict:
    name = parameter_name(action)
    help_text = " ".join((action.help or "").split())
    default = _shown_default(action)
    if default is not None:
        help_text += f" Default: {default}."
    known = known_formats.get(name)
    by_type = (known_types if known_types is not None else type_formats()).get(action.type)
    if known is not None:
        regexes, param_type = list(known.regexes), known.param_type
    elif is_boolean(action):
        regexes, param_type = [_BOOL], "BOOLEAN"
    elif action.choices:
        regexes = ["^(%s)$" % "|".join(re.escape(str(c)) for c in action.choices)]
        param_type = "ENUM"
    elif by_type is not None:
        regexes, param_type = list(by_type.regexes), by_type.param_type
    else:
        regexes, param_type = [_PLAIN_TEXT], "TEXT"
    entry = {
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "helpText": help_text,
        "isOptional": not required,
        "paramType": param_type,
        "regexes": regexes,
    }
    if param_type == "ENUM":
        entry["enumOptions"] = [{"value": str(c), "label": str(c)} for c in action.choices]
    if default is not None:
        entry["defaultValue"] = default
    return entry


def metadata(job: str) -> Dict:
    """The Flex Template metadata of one job. An option is required when argparse
    says so, or when the job lists it in REQUIRED_OPTIONS (Beam parses every
    PipelineOptions subclass for every pipeline, so required=True cannot be used in
    their declarations)."""
    module = importlib.import_module(f"beam_jobs.{job}")
    declared_required = set(module.REQUIRED_OPTIONS) if hasattr(module, "REQUIRED_OPTIONS") \
        else set()
    known_formats, known_types = formats(), type_formats()
    return {
        "name": f"marketplace-preprocessing-{job.replace('_', '-')}",
        "description": job_description(module),
        "parameters": [
            parameter(a, a.required or a.dest in declared_required, known_formats,
                      known_types)
            for a in option_actions(job_parser(job))],
    }


def render(content: Dict) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def expected_files() -> Dict[str, str]:
    """{path relative to flex_templates/: text} of every generated file."""
    return {os.path.join(job, METADATA): render(metadata(job)) for job in job_modules()}


def committed_files() -> Dict[str, str]:
    found = {}
    for entry in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, entry, METADATA)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                found[os.path.join(entry, METADATA)] = handle.read()
    return found


def check() -> List[str]:
    """Differences between the committed files and the generated ones, as messages."""
    expected, committed = expected_files(), committed_files()
    problems = []
    for rel in sorted(set(expected) | set(committed)):
        if rel not in committed:
            problems.append(f"flex_templates/{rel} is missing")
        elif rel not in expected:
            problems.append(f"flex_templates/{rel} belongs to no job in beam_jobs")
        elif committed[rel] != expected[rel]:
            diff = "".join(difflib.unified_diff(
                committed[rel].splitlines(True), expected[rel].splitlines(True),
                f"committed/{rel}", f"generated/{rel}"))
            problems.append(f"flex_templates/{rel} is not current:\n{diff}")
    return problems


def write() -> List[str]:
    written = []
    for rel, text in expected_files().items():
        path = os.path.join(HERE, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(f"flex_templates/{rel}")
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flex_templates.generate",
        description="Write (or with --check, verify) flex_templates/<job>/metadata.json "
                    "from each job's option declarations.")
    parser.add_argument("--check", action="store_true",
                        help="Write nothing; exit 1 when a committed file differs from what "
                             "would be generated.")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python -m flex_templates.generate", file=sys.stderr)
            return 1
        return 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
