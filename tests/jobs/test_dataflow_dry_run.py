"""Every job translated into a Dataflow job offline: DataflowRunner with --dry_run=True
builds the pipeline, applies Dataflow's overrides, pickles every DoFn and makes the
job's portable proto, and stops before staging or submitting anything.

The runs happen in one subprocess (time limit 120 s, so a hang cannot stall CI) that
calls each job's run(argv) in-process. In it every socket connection and name lookup
is refused and recorded, and no credentials are reachable (no
GOOGLE_APPLICATION_CREDENTIALS, an empty gcloud configuration): building a job for a
Flex Template launcher must need neither the network nor credentials.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.jobs

MARKER = "DRY_RUN_RESULT "
IMAGE = "asia-northeast3-docker.pkg.dev/demo-project/preprocessing/daily:test"
COMMON = [
    "--runner=DataflowRunner", "--dry_run=True", "--project=demo-project",
    "--region=asia-northeast3", "--temp_location=gs://demo-bucket/tmp",
    f"--sdk_container_image={IMAGE}", "--output_dir=gs://demo-bucket/out",
    "--run_date=2026-11-26",
]
BIGQUERY = "--events=bq://demo-project.events.events"
EXPORT = "--events=gs://demo-bucket/events"
VALIDATED = "--validated_events=gs://demo-bucket/out/validated"
# Read by the workers, never while the job is built (so the dry run reaches no secret).
SALT = "--user_id_salt_secret=projects/demo-project/secrets/user-id-salt/versions/1"
NO_FEATURES = "--daily_stages=graph,examples"

VALIDATION_STEPS = {
    "ReadEvents", "CheckEvents", "GroupQuarantine", "PublishQuarantine", "AwaitQuarantine",
    "ValidTables", "ValidateDay", "NameValidatedPieces", "PublishValidated", "DescribeInput",
}
GRAPH_STEPS = {"ReadArticleIndex", "SelectIndexPieces", "BuildGraph", "PublishGraph",
               "PublishArticleIndex"}
EXAMPLE_STEPS = {"BuildExamples", "IndexChunks", "RegionChunks", "SkipgramCounts",
                 "SequencesCounts", "RankingCounts", "PublishSkipgram", "PublishSequences",
                 "PublishRanking"}
REPORT_STEPS = {"PublishReport"}     # the daily job's last step: the day's page
READ_BIGQUERY_STEPS = {"ReadEvents/NameTable", "ReadEvents/CheckTableSchema",
                       "ReadEvents/ReadTable", "ReadEvents/BatchRows",
                       "ReadEvents/RowsToArrow", "ReadEvents/CountRows",
                       "ReadEvents/NoMissingColumns", "ReadEvents/CountRowsPerDate",
                       "ReadEvents/SumRowsPerDate", "ReadEvents/RequirePartitions",
                       "ReadEvents/DescribeNewColumns", "ReadEvents/GatherReadTallies"}
READ_EXPORT_STEPS = {"ReadEvents/ListPartitions", "ReadEvents/ListFiles",
                     "ReadEvents/FilesOfPartitions", "ReadEvents/SpreadFiles",
                     "ReadEvents/ReadFiles", "ReadEvents/CountFiles",
                     "ReadEvents/SumFilesPerDate", "ReadEvents/RequirePartitions",
                     "ReadEvents/CollectNewColumns", "ReadEvents/DescribeNewColumns",
                     "ReadEvents/GatherReadTallies"}
READ_VALIDATED_STEPS = {"ReadValidatedEvents/NameValidatedDay",
                        "ReadValidatedEvents/RequireBlessedDay",
                        "ReadValidatedEvents/ListValidatedDay",
                        "ReadValidatedEvents/ListValidatedFiles",
                        "ReadValidatedEvents/SpreadValidatedFiles",
                        "ReadValidatedEvents/ReadValidatedFiles"}

# case id -> (job, job arguments, exact top-level steps, exact steps inside the read)
CASES = {
    "validate_events-bigquery": ("validate_events", [BIGQUERY], VALIDATION_STEPS,
                                 READ_BIGQUERY_STEPS),
    "validate_events-export": ("validate_events", [EXPORT], VALIDATION_STEPS,
                               READ_EXPORT_STEPS),
    # A whole-number shard count and the scale options, as a Flex Template passes them.
    "validate_events-shards": ("validate_events", [EXPORT, "--dedup_shards=7",
                                                   "--max_rows_per_shard=250000",
                                                   "--target_shard_mb=64"],
                               VALIDATION_STEPS, READ_EXPORT_STEPS),
    "cooccurrence_graph-export": ("cooccurrence_graph", [EXPORT],
                                  VALIDATION_STEPS | GRAPH_STEPS, READ_EXPORT_STEPS),
    "cooccurrence_graph-validated": ("cooccurrence_graph", [VALIDATED],
                                     {"ReadValidatedEvents", "DescribeInput"} | GRAPH_STEPS,
                                     READ_VALIDATED_STEPS),
    "daily-bigquery": ("daily", [BIGQUERY, SALT, NO_FEATURES],
                       VALIDATION_STEPS | GRAPH_STEPS | EXAMPLE_STEPS | REPORT_STEPS,
                       READ_BIGQUERY_STEPS),
    "daily-export": ("daily", [EXPORT, SALT, NO_FEATURES],
                     VALIDATION_STEPS | GRAPH_STEPS | EXAMPLE_STEPS | REPORT_STEPS,
                     READ_EXPORT_STEPS),
    "training_examples-validated": ("training_examples", [VALIDATED, SALT],
                                    {"ReadValidatedEvents", "DescribeInput", "IndexArticles",
                                     "ReadArticleIndex", "SelectIndexPieces",
                                     "PublishArticleIndex"} | EXAMPLE_STEPS,
                                    READ_VALIDATED_STEPS),
    "features-validated": ("features", [VALIDATED, SALT], None, READ_VALIDATED_STEPS),
}
# tf.Transform traces preprocessing_fn while the pipeline is built and writes its
# placeholder assets under <--temp_location>/.../tftransform_tmp then (its design: the
# launcher has that bucket's credentials). The one exception to "no cloud call at
# construction": these cases must stop there and nowhere else.
# (The daily template at its default --daily_stages stops at the same place: it builds
# the same features stage.)
TFT_CONSTRUCTION_WRITE = {"features-validated"}

DRIVER = r'''
import importlib, json, socket, sys, time, traceback

attempts = []

def _record(kind, target):
    stack = traceback.extract_stack()[:-2]
    frames = [f"{f.filename}:{f.lineno} {f.name}" for f in stack[-12:]]
    attempts.append({"call": kind, "target": repr(target), "stack": frames})

_connect = socket.socket.connect
def connect(self, address):
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect(self, address)
    _record("socket.connect", address)
    raise OSError("network disabled in the dry-run test")
def connect_ex(self, address):
    _record("socket.connect_ex", address)
    return 111
def getaddrinfo(host, *args, **kwargs):
    _record("socket.getaddrinfo", host)
    raise socket.gaierror("network disabled in the dry-run test")
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo

import warnings
warnings.filterwarnings("ignore")
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.portability.api import beam_runner_api_pb2

def describe(result):
    job = result.job
    proto = job.proto_pipeline
    transforms = proto.components.transforms
    top = sorted(transforms[sub].unique_name
                 for root in proto.root_transform_ids
                 for sub in transforms[root].subtransforms)
    names = sorted(t.unique_name for t in transforms.values())
    images = sorted({beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
                     for env in proto.components.environments.values()})
    return {"state": str(result.state), "top": top, "all": names, "images": images,
            "streaming": bool(job.options.view_as(StandardOptions).streaming)}

def loaded_option_classes():
    import argparse
    found, stack = [], list(PipelineOptions.__subclasses__())
    seen = set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        parser = argparse.ArgumentParser(conflict_handler="resolve", add_help=False)
        cls._add_argparse_args(parser)
        found.append({"module": cls.__module__, "class": cls.__qualname__,
                      "options": sorted(s for a in parser._actions for s in a.option_strings),
                      "dests": sorted(a.dest for a in parser._actions)})
    return found

cases = json.loads(sys.argv[1])
out = {"cases": {}}
for case, (job, argv) in cases.items():
    start = time.monotonic()
    before = len(attempts)
    try:
        module = importlib.import_module(f"beam_jobs.{job}")
        entry = describe(module.run(argv))
    except BaseException as err:
        entry = {"error": "".join(traceback.format_exception(err))}
    entry["seconds"] = round(time.monotonic() - start, 2)
    entry["network"] = attempts[before:]
    out["cases"][case] = entry
out["option_classes"] = loaded_option_classes()
print("DRY_RUN_RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def dry_runs():
    """Two driver processes at once (the tf.Transform cases import TensorFlow and trace
    their graphs; the others do not), merged: each case's result, and every option class
    either process loaded."""
    cases = {case: (job, COMMON + args) for case, (job, args, _, _) in CASES.items()}
    groups = [{c: v for c, v in cases.items() if c not in TFT_CONSTRUCTION_WRITE},
              {c: v for c, v in cases.items() if c in TFT_CONSTRUCTION_WRITE}]
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryDirectory() as gcloud_config:
        env["CLOUDSDK_CONFIG"] = gcloud_config
        procs = [subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(group)], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for group in groups]
        outputs = [proc.communicate(timeout=180) for proc in procs]
    merged = {"cases": {}, "option_classes": []}
    seen = set()
    for proc, (stdout, stderr) in zip(procs, outputs):
        lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
        assert proc.returncode == 0 and lines, (
            f"dry-run driver exited {proc.returncode}\n{stdout[-3000:]}\n{stderr[-6000:]}")
        result = json.loads(lines[-1][len(MARKER):])
        merged["cases"].update(result["cases"])
        for entry in result["option_classes"]:
            if (entry["module"], entry["class"]) not in seen:
                seen.add((entry["module"], entry["class"]))
                merged["option_classes"].append(entry)
    assert sorted(merged["cases"]) == sorted(CASES)
    return merged


@pytest.mark.parametrize("case", sorted(TFT_CONSTRUCTION_WRITE))
def test_tf_transform_only_writes_its_temp_assets_while_built(dry_runs, case):
    error = dry_runs["cases"][case].get("error", "")
    assert "gs://demo-bucket/tmp/features-tft-" in error and "/tftransform_tmp" in error, \
        error[-3000:]
    assert "tensorflow_transform" in error


@pytest.mark.parametrize("case", sorted(set(CASES) - TFT_CONSTRUCTION_WRITE))
def test_job_translates_to_a_dataflow_job(dry_runs, case):
    _, _, top_steps, read_steps = CASES[case]
    result = dry_runs["cases"][case]
    assert "error" not in result, result.get("error")
    assert result["state"] == "DONE"
    if top_steps is not None:
        assert set(result["top"]) == top_steps
        assert len(result["top"]) == len(top_steps), "a step label is used twice"
    read = next(iter(read_steps)).split("/")[0]
    assert {n for n in result["all"] if n.count("/") == 1 and n.startswith(read + "/")} \
        == read_steps
    # Batch, and every step runs in the one image that also launched the job.
    assert result["streaming"] is False
    assert result["images"] == [IMAGE]


@pytest.mark.parametrize("case", sorted(CASES))
def test_building_a_job_uses_no_network(dry_runs, case):
    """Importing the job (the first case of each job) and building it."""
    assert dry_runs["cases"][case]["network"] == []


def test_options_do_not_collide_with_any_loaded_option_class(dry_runs):
    """Beam merges same-named flags of different PipelineOptions classes silently;
    this checks every class loaded by a real run (Beam's, TFDV's, tfx-bsl's, ...)."""
    classes = dry_runs["option_classes"]
    ours = [c for c in classes if c["module"] == "beam_jobs.options"]
    foreign = [c for c in classes if not c["module"].startswith("beam_jobs")]
    from apache_beam.options.pipeline_options import PipelineOptions
    from beam_jobs import options as opts
    declared = {name for name, value in vars(opts).items()
                if isinstance(value, type) and issubclass(value, PipelineOptions)
                and value.__module__ == opts.__name__}
    assert {"EventsOptions", "ValidationOptions", "GraphOptions", "ScaleOptions"} <= declared
    assert {c["class"] for c in ours} == declared
    our_names = {s for c in ours for s in c["options"]}
    our_dests = {d for c in ours for d in c["dests"]}
    clashes = sorted(
        f"{c['module']}.{c['class']}: {name}" for c in foreign
        for name in (set(c["options"]) & our_names) | (set(c["dests"]) & our_dests))
    assert len({s for c in foreign for s in c["options"]}) > 100
    assert clashes == []


def test_every_job_has_a_dry_run():
    from flex_templates import generate
    assert sorted({job for job, _, _, _ in CASES.values()}) == generate.job_modules()
