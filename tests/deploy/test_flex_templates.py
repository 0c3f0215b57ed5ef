"""Flex Template metadata, option declarations, --help, and the build files agree."""

import argparse
import json
import os
import re
import subprocess
import sys

import apache_beam
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from google.cloud import dataflow_v1beta3
from google.protobuf import json_format

from beam_jobs import options as opts
from flex_templates import generate
from tests.helpers.paths import ROOT

# Every job module, found the way the generator finds them (the test below checks the
# finding against the sources), so a new job is tested without being named here.
JOBS = tuple(generate.job_modules())
# Valid values of the options without a default, for the regex tests.
SAMPLES = {
    "events": "bq://demo-project.events.events",
    "output_dir": "gs://demo-bucket/out",
    "validated_events": "gs://demo-bucket/out/validated",
    "index_from": "gs://demo-bucket/out/cooccurrence/dt=2026-11-25",
    "tfdv_schema": "gs://demo-bucket/schemas/events_schema.pbtxt",
    "event_weights": "article_view:1,article_like:3,chat_start:5",
    "user_id_salt_file": "gs://demo-bucket/secrets/salt.bin",
    "user_id_salt_secret": "projects/demo-project/secrets/user-id-salt/versions/3",
}
# What no parameter of any job accepts (the three, and more of their kind).
HOSTILE = [
    "bq://demo-project.events.events; DROP TABLE x",
    "2026-11-20' OR '1'='1",
    "gs://demo-bucket/out\n",
    "auto\n",
    "true\nfalse",
    "gs://demo-bucket/out\rx",
    'gs://demo-bucket/"out"',
    "gs://demo-bucket/$(reboot)",
    "`reboot`",
]


def committed(job):
    path = os.path.join(ROOT, "flex_templates", job, "metadata.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def declared(job):
    """{name: argparse action} of the job's options, from its declarations."""
    return {generate.parameter_name(a): a
            for a in generate.option_actions(generate.job_parser(job))}


def squeeze(text):
    return re.sub(r"\s+", "", text)


def our_option_classes():
    return [value for value in vars(opts).values()
            if isinstance(value, type) and issubclass(value, PipelineOptions)
            and value.__module__ == opts.__name__]


def class_options(cls):
    parser = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
    cls._add_argparse_args(parser)
    return parser._actions


@pytest.mark.functions
def test_the_jobs_are_the_modules_with_option_classes_and_run():
    """Independently of generate's AST walk: a module is a job when a line of it starts
    with `OPTION_CLASSES = ` and one with `def run(`."""
    folder = os.path.join(ROOT, "beam_jobs")
    expected = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            source = f.read()
        if re.search(r"^OPTION_CLASSES\s*=", source, re.M) and \
                re.search(r"^def run\(", source, re.M):
            expected.append(name[:-3])
    assert list(JOBS) == expected
    assert {"cooccurrence_graph", "daily", "validate_events"} <= set(JOBS)
    assert "report" not in JOBS and "options" not in JOBS


@pytest.mark.functions
def test_top_level_names():
    source = ("import os\nOPTION_CLASSES = (A, B)\nX: int = 1\n"
              "def run(argv=None):\n    inner = 2\nclass C:\n    run = 3\n"
              "if True:\n    hidden = 4\n")
    assert generate.top_level_names(source) == {"OPTION_CLASSES", "X", "run", "C"}


@pytest.mark.functions
def test_a_job_without_description_is_described_by_its_docstring():
    import types
    module = types.ModuleType("beam_jobs.example",
                              "Write the day's\n  examples.\n\nMore detail.\n")
    assert generate.job_description(module) == "Write the day's examples."
    module.DESCRIPTION = "Declared."
    assert generate.job_description(module) == "Declared."


@pytest.mark.functions
def test_every_job_has_its_metadata_folder():
    folders = sorted(e for e in os.listdir(os.path.join(ROOT, "flex_templates"))
                     if os.path.isfile(os.path.join(ROOT, "flex_templates", e,
                                                    "metadata.json")))
    assert folders == list(JOBS)


@pytest.mark.jobs
def test_committed_metadata_is_current():
    proc = subprocess.run([sys.executable, "-m", "flex_templates.generate", "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.functions
def test_check_reports_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "daily"
    stale.mkdir()
    (stale / "metadata.json").write_text("{}\n")
    (tmp_path / "retired_job").mkdir()
    (tmp_path / "retired_job" / "metadata.json").write_text("{}\n")
    monkeypatch.setattr(generate, "HERE", str(tmp_path))
    problems = generate.check()
    expected = sorted(
        [f"flex_templates/{job}/metadata.json is missing" for job in JOBS if job != "daily"]
        + ["flex_templates/daily/metadata.json is not current:",
           "flex_templates/retired_job/metadata.json belongs to no job in beam_jobs"])
    assert [p.splitlines()[0] for p in problems] == expected


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_metadata_has_every_option_with_its_help(job):
    import importlib
    module = importlib.import_module(f"beam_jobs.{job}")
    content = committed(job)
    assert content["description"] == generate.job_description(module)
    actions = declared(job)
    parameters = {p["name"]: p for p in content["parameters"]}
    assert [p["name"] for p in content["parameters"]] == list(actions)
    for name, action in actions.items():
        entry = parameters[name]
        assert set(entry) <= {"name", "label", "helpText", "isOptional", "paramType",
                              "regexes", "defaultValue", "enumOptions"}
        assert entry["label"] and entry["helpText"].strip(), name
        assert squeeze(action.help) in squeeze(entry["helpText"]), name
        assert isinstance(entry["isOptional"], bool)


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_regexes_accept_every_default_and_choice(job):
    for name, action in declared(job).items():
        entry = next(p for p in committed(job)["parameters"] if p["name"] == name)
        patterns = [re.compile(r) for r in entry.get("regexes", [])]
        values = [str(c) for c in action.choices or ()]
        if isinstance(action.default, bool):
            values.append("true" if action.default else "false")
        elif action.default not in (None, ""):
            values.append(str(action.default))
        for value in values:
            assert all(p.match(value) for p in patterns), (name, value)


def shown(default):
    return ("true" if default else "false") if isinstance(default, bool) else str(default)


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_default_value_is_the_declared_default(job):
    parameters = {p["name"]: p for p in committed(job)["parameters"]}
    for name, action in declared(job).items():
        if action.default in (None, ""):
            assert "defaultValue" not in parameters[name], name
        else:
            assert parameters[name]["defaultValue"] == shown(action.default), name
            # What the launcher passes back must parse to the declared default.
            parser = generate.job_parser(job)
            known, _ = parser.parse_known_args([f"--{name}={parameters[name]['defaultValue']}"])
            assert getattr(known, action.dest) == action.default, name


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_options_with_choices_are_enums(job):
    parameters = {p["name"]: p for p in committed(job)["parameters"]}
    for name, action in declared(job).items():
        if action.choices:
            assert parameters[name]["paramType"] == "ENUM", name
            assert parameters[name]["enumOptions"] == [
                {"value": str(c), "label": str(c)} for c in action.choices], name
        else:
            assert parameters[name]["paramType"] != "ENUM", name
            assert "enumOptions" not in parameters[name], name
    if job == "daily":
        assert [o["value"] for o in parameters["weighting"]["enumOptions"]] == [
            "ppmi", "count", "jaccard", "cosine"]


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_every_parameter_has_a_regex_that_refuses_injection(job):
    """Every parameter, the free-text ones too, has a regex; each accepts its default
    (or a sample value) and refuses the issue's injection strings and any newline.
    Whole-value matching, as the launcher does."""
    for entry in committed(job)["parameters"]:
        name, patterns = entry["name"], entry.get("regexes", [])
        assert patterns, name
        value = entry.get("defaultValue", SAMPLES.get(name))
        if value is not None:
            assert whole_match(patterns, value), (name, value)
            for bad in (value + "\n", "\n" + value, value + "\r", value + "\x00",
                        value + "; rm -rf /", value + "' OR '1'='1"):
                assert not whole_match(patterns, bad), (name, bad)
        for bad in HOSTILE:
            assert not whole_match(patterns, bad), (name, bad)


@pytest.mark.functions
def test_every_option_without_a_default_has_a_sample():
    for job in JOBS:
        for entry in committed(job)["parameters"]:
            assert "defaultValue" in entry or entry["name"] in SAMPLES, (job, entry["name"])


@pytest.mark.functions
def test_plain_text_regex():
    pattern = [generate._PLAIN_TEXT]
    for value in ("", "skipgram,ranking", "a b c", "Asia/Seoul", "x=1"):
        assert whole_match(pattern, value), value
    for value in ("a;b", "a'b", 'a"b', "a\\b", "a`b", "a\nb", "a\tb", "a\x7fb"):
        assert not whole_match(pattern, value), value


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_metadata_parses_as_dataflow_template_metadata(job):
    """The file through Google's own message, protobuf's JSON parser refusing unknown
    fields: what gcloud dataflow flex-template build --metadata-file sends."""
    path = os.path.join(ROOT, "flex_templates", job, "metadata.json")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    message = dataflow_v1beta3.TemplateMetadata.from_json(text, ignore_unknown_fields=False)
    content = json.loads(text)
    assert message.name == content["name"] == f"marketplace-preprocessing-{job.replace('_', '-')}"
    assert message.description == content["description"]
    assert len(message.parameters) == len(content["parameters"])
    for parsed, entry in zip(message.parameters, content["parameters"]):
        assert parsed.name == entry["name"]
        assert parsed.label == entry["label"]
        assert parsed.help_text == entry["helpText"]
        assert parsed.is_optional is entry["isOptional"]
        assert list(parsed.regexes) == entry["regexes"]
        assert parsed.param_type.name == entry["paramType"]
        assert parsed.default_value == entry.get("defaultValue", "")
        assert [(o.value, o.label) for o in parsed.enum_options] == [
            (o["value"], o["label"]) for o in entry.get("enumOptions", [])]
    # Back to JSON, nothing lost (protobuf leaves out false and empty fields).
    again = json.loads(dataflow_v1beta3.TemplateMetadata.to_json(
        message, use_integers_for_enums=False, including_default_value_fields=False))
    assert again == {**content, "parameters": [
        {k: v for k, v in p.items() if v not in (False, "", [])}
        for p in content["parameters"]]}


@pytest.mark.functions
def test_template_metadata_parse_refuses_unknown_fields():
    content = committed("daily")
    content["parameters"][0]["regex"] = ["^x$"]
    with pytest.raises(json_format.ParseError, match='no field named "regex"'):
        dataflow_v1beta3.TemplateMetadata.from_json(json.dumps(content))
    content = committed("daily")
    content["parameters"][0]["paramType"] = "GCS_FOLDER"
    with pytest.raises(json_format.ParseError, match="GCS_FOLDER"):
        dataflow_v1beta3.TemplateMetadata.from_json(json.dumps(content))


@pytest.mark.functions
def test_regexes_of_known_formats():
    params = {p["name"]: p for p in committed("daily")["parameters"]}

    def accepts(name, value):
        return all(re.match(r, value) for r in params[name]["regexes"])

    assert accepts("events", "bq://demo-project.events.events")
    assert accepts("events", "bq://example.com:demo-project.events.events")
    assert accepts("events", "gs://demo-bucket/events")
    assert not accepts("events", "bq://demo-project.events")
    assert not accepts("events", "demo-project.events.events")
    assert not accepts("events", "/data/events")
    assert accepts("run_date", "2026-11-26") and accepts("run_date", "auto")
    assert not accepts("run_date", "26/11/2026") and not accepts("run_date", "yesterday")
    assert accepts("output_dir", "gs://demo-bucket/out")
    assert not accepts("output_dir", "/tmp/out")
    assert accepts("weighting", "jaccard") and not accepts("weighting", "pmi")
    assert accepts("top_k", "50") and not accepts("top_k", "5.5")
    assert accepts("session_gap_minutes", "30") and accepts("session_gap_minutes", "7.5")
    assert not accepts("session_gap_minutes", "half")
    assert accepts("allow_anomalies", "true") and accepts("allow_anomalies", "false")
    assert not accepts("allow_anomalies", "yes")
    assert accepts("event_weights", "article_view:1,article_like:3,chat_start:5")
    assert accepts("event_weights", "")
    assert not accepts("event_weights", "article_view=1")
    assert not whole_match(params["event_weights"]["regexes"], "article_view:1\n")
    assert accepts("tfdv_schema", "/template/schemas/events_schema.pbtxt")
    assert accepts("tfdv_schema", "gs://demo-bucket/schema.pbtxt")
    assert not accepts("tfdv_schema", "schema.pbtxt")
    assert params["weighting"]["paramType"] == "ENUM"
    assert params["weighting"]["defaultValue"] == "ppmi"
    assert params["allow_anomalies"]["paramType"] == "BOOLEAN"
    assert accepts("allow_missing_partitions", "true")
    assert accepts("allow_missing_partitions", "false")
    assert not accepts("allow_missing_partitions", "yes")
    assert params["allow_missing_partitions"]["paramType"] == "BOOLEAN"
    assert params["allow_missing_partitions"]["isOptional"] is True
    assert params["output_dir"]["paramType"] == "GCS_WRITE_FOLDER"


def whole_match(patterns, value):
    """A launcher's regex must match the whole value. Python's re.match would let `$`
    match before a trailing newline, so the tests use fullmatch."""
    return bool(patterns) and all(re.fullmatch(p, value) for p in patterns)


SHARD_COUNTS = [(job, name) for job in JOBS for name in ("graph_shards", "dedup_shards")
                if name in declared(job)]


@pytest.mark.functions
def test_every_job_has_a_shard_count():
    assert ("cooccurrence_graph", "graph_shards") in SHARD_COUNTS
    assert ("daily", "graph_shards") in SHARD_COUNTS
    assert ("daily", "dedup_shards") in SHARD_COUNTS
    assert ("validate_events", "dedup_shards") in SHARD_COUNTS


@pytest.mark.functions
@pytest.mark.parametrize("job,name", SHARD_COUNTS)
def test_shard_count_regex_takes_auto_or_a_whole_number(job, name):
    entry = next(p for p in committed(job)["parameters"] if p["name"] == name)
    patterns = entry["regexes"]
    assert entry["paramType"] == "TEXT"
    default = declared(job)[name].default
    assert default == "auto"
    for value in (default, "auto", "7", "1", "64", "256", "1000"):
        assert whole_match(patterns, value), value
    for value in ("0", "-1", "07", "+7", "7.0", "1e3", "AUTO", " 7", "auto; rm", "auto\n",
                  "4\n", "", "four"):
        assert not whole_match(patterns, value), value


@pytest.mark.functions
@pytest.mark.parametrize("value", ["auto", "7", "1", "64"])
def test_what_the_shard_count_regex_accepts_the_option_accepts(value):
    assert opts.shard_count(value) == value


@pytest.mark.functions
def test_scale_option_regexes():
    params = {p["name"]: p for p in committed("daily")["parameters"]}
    rows, megabytes = params["max_rows_per_shard"], params["target_shard_mb"]
    assert rows["paramType"] == megabytes["paramType"] == "NUMBER"
    for value in ("1000000", "1", "250000"):
        assert whole_match(rows["regexes"], value), value
        assert opts.positive_int(value) == int(value)
    for value in ("0", "-5", "1.5", "1e6", "1_000", "10\n", ""):
        assert not whole_match(rows["regexes"], value), value
    for value in ("128.0", "128", "0.5", ".5", "64.", "1e2", "2.5E-1", "0.001"):
        assert whole_match(megabytes["regexes"], value), value
        assert opts.positive_float(value) == float(value)
    for value in ("0", "0.0", ".0", "-1", "-0.5", "inf", "nan", "1e400", "12 MB", "1\n", ""):
        assert not whole_match(megabytes["regexes"], value), value


@pytest.mark.functions
@pytest.mark.parametrize("job", JOBS)
def test_every_typed_option_has_a_regex(job):
    """An option parsed by a type other than text (int, float, positive_int,
    shard_count, a str-to-bool) or with choices gets a regex; a new argparse type
    needs an entry in generate.type_formats()."""
    parameters = {p["name"]: p for p in committed(job)["parameters"]}
    for name, action in declared(job).items():
        if action.type not in (None, str) or action.choices or generate.is_boolean(action):
            assert parameters[name]["regexes"] != [generate._PLAIN_TEXT], name


@pytest.mark.functions
def test_formats_name_only_declared_options():
    """Every key of formats() is an option of a class in beam_jobs/options.py (a class
    no job uses yet, too)."""
    names = {s[2:] for cls in our_option_classes() for a in class_options(cls)
             for s in a.option_strings}
    assert set(generate.formats()) <= names


@pytest.mark.functions
def test_new_option_types_have_formats():
    cases = {
        opts.non_negative_int: (["0", "4", "200000000"], ["-1", "1.5", "", "4\n"]),
        opts.unit_fraction: (["0.1", ".5", "0.999"], ["0", "0.0", "1", "1.0", "-0.1", ".",
                                                     "0.5\n"]),
        opts.share: (["0", "0.5", ".25", "1", "1.0", "0."], ["1.5", "-0", "2", "", "0.5\n"]),
    }
    known = generate.type_formats()
    for kind, (good, bad) in cases.items():
        patterns = known[kind].regexes
        for value in good:
            assert whole_match(patterns, value), (kind.__name__, value)
            kind(value)
        for value in bad:
            assert not whole_match(patterns, value), (kind.__name__, value)


@pytest.mark.functions
def test_option_names_are_unique_across_our_classes():
    classes = our_option_classes()
    assert {c.__name__ for c in classes} == {"EventsOptions", "ValidationOptions", "ValidatedInputOptions",
                                             "GraphOptions", "ScaleOptions", "PublishingOptions", "SplitOptions",
                                             "PrivacyOptions", "ExamplesOptions",
                                             "FeaturesOptions", "DailyOptions"}
    seen = {}
    for cls in classes:
        for action in class_options(cls):
            for key in [action.dest] + list(action.option_strings):
                assert key not in seen, f"{key} is declared by {seen[key]} and {cls.__name__}"
                seen[key] = cls.__name__


@pytest.mark.functions
def test_every_job_option_class_is_ours():
    import importlib
    for job in JOBS:
        module = importlib.import_module(f"beam_jobs.{job}")
        assert set(module.OPTION_CLASSES) <= set(our_option_classes())


@pytest.mark.functions
def test_option_names_do_not_collide_with_beams():
    import apache_beam.runners.dataflow.dataflow_runner  # noqa: F401  more of Beam's options

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    beams = {c for c in subclasses(PipelineOptions) if c.__module__.startswith("apache_beam")}
    beam_names = {s for c in beams for a in class_options(c) for s in a.option_strings}
    beam_dests = {a.dest for c in beams for a in class_options(c)}
    assert {"--runner", "--project", "--temp_location", "--sdk_container_image"} <= beam_names
    for cls in our_option_classes():
        for action in class_options(cls):
            assert not set(action.option_strings) & beam_names, action.option_strings
            assert action.dest not in beam_dests, action.dest


@pytest.fixture(scope="module")
def help_outputs():
    """`python -m beam_jobs.<job> --help` of every job, run side by side."""
    env = dict(os.environ, COLUMNS="200", TF_CPP_MIN_LOG_LEVEL="3")
    procs = {job: subprocess.Popen([sys.executable, "-m", f"beam_jobs.{job}", "--help"],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
             for job in JOBS}
    outputs = {}
    for job, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        outputs[job] = (proc.returncode, out, err)
    return outputs


@pytest.mark.jobs
@pytest.mark.parametrize("job", JOBS)
def test_help_lists_every_option_with_its_help(help_outputs, job):
    returncode, out, err = help_outputs[job]
    assert returncode == 0, err[-3000:]
    assert out.startswith(f"usage: python -m beam_jobs.{job}")
    for name, action in declared(job).items():
        assert f"--{name}" in out
        assert squeeze(action.help) in squeeze(out), name


BOOLEANS = [(job, name) for job in JOBS for name, a in declared(job).items()
            if generate.is_boolean(a)]
@pytest.mark.functions
def test_no_option_is_a_store_true_flag():
    """A store_true/store_false flag rejects the launcher's --flag=true/false (the test
    below then fails on it too; this one names every such flag): declare booleans
    type=str_to_bool, nargs='?', const=True."""
    flags = [(job, name) for job in JOBS for name, a in declared(job).items()
             if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction))]
    assert flags == []


@pytest.mark.functions
@pytest.mark.parametrize("job,name", BOOLEANS)
def test_boolean_options_take_flex_template_values(job, name):
    """The Flex Template launcher passes every parameter as --name=value."""
    parser = generate.job_parser(job)
    action = declared(job)[name]
    values = {}
    for value in ("true", "false"):
        try:
            known, _ = parser.parse_known_args([f"--{name}={value}"])
        except SystemExit:
            pytest.fail(f"--{name}={value} is rejected by python -m beam_jobs.{job}")
        values[value] = getattr(known, action.dest)
    assert values == {"true": True, "false": False}
    known, _ = parser.parse_known_args([f"--{name}"])
    assert getattr(known, action.dest) is True
    assert getattr(parser.parse_known_args([])[0], action.dest) is action.default


@pytest.mark.jobs
def test_cloudbuild_builds_a_template_for_every_job():
    """The build's job list is the folders of flex_templates/ with a metadata.json: the
    same shell line, run here, lists exactly the jobs."""
    with open(os.path.join(ROOT, "cloudbuild.yaml"), encoding="utf-8") as f:
        build = yaml.safe_load(f)
    assert set(build["substitutions"]) >= {"_REGION", "_REPO", "_TEMPLATE_BUCKET", "_REVISION"}
    assert build["substitutions"]["_REGION"] == "asia-northeast3"
    steps = {s["id"]: " ".join(s["args"]) for s in build["steps"]}
    listing = "$$(ls flex_templates/*/metadata.json | cut -d/ -f2)"
    assert f"for JOB in {listing}; do" in steps["build-images"]
    assert f"for JOB in {listing}; do" in steps["build-templates"]
    proc = subprocess.run(["bash", "-c", listing[len("$$("):-1]], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == list(JOBS)
    assert "--build-arg JOB=" in steps["build-images"]
    assert "sed -n 's/^apache-beam==//p' requirements.lock" in steps["resolve-bases"]
    for piece in ("gcloud dataflow flex-template build", "--sdk-language PYTHON",
                  '--metadata-file "flex_templates/$$JOB/metadata.json"',
                  '"$$TEMPLATES/$$JOB-${_REVISION}.json"',
                  '--image "$$(cat /workspace/images/$$JOB)"'):
        assert piece in steps["build-templates"], piece


@pytest.mark.functions
def test_image_versions_come_from_the_lock_and_setup():
    with open(os.path.join(ROOT, "requirements.lock"), encoding="utf-8") as f:
        beam_pins = [line.split("==")[1].strip() for line in f
                     if line.startswith("apache-beam==")]
    assert beam_pins == [apache_beam.__version__]
    with open(os.path.join(ROOT, "flex_templates", "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        python_requires = re.search(r'python_requires="([^"]+)"', f.read()).group(1)
    assert python_requires == ">=3.11,<3.12"
    assert "FROM ${BEAM_SDK_IMAGE} AS beam_sdk" in dockerfile
    assert "FROM ${LAUNCHER_BASE}\n" in dockerfile
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/beam_jobs/${JOB}.py" in dockerfile
    # No version is written into the Dockerfile's instructions.
    instructions = "\n".join(line for line in dockerfile.splitlines()
                              if not line.lstrip().startswith("#"))
    assert not re.search(r"==|\d+\.\d+\.\d+", instructions)
