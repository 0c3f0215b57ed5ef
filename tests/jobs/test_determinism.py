"""Tier 3: the daily job is deterministic. One small generated day through beam_jobs.daily
three times, each into a fresh output folder (so the article index state is the same
empty one): a first run (the session's shared run of the marked day, every stage), then
two reruns without the features stage, one with two worker processes, one with the
same rows written to the export layout in another order and split over other file names
(a plain rerun would test nothing these two do not). Every published output (validated
Parquet rows, quarantine lines, each graph file set, the validation summary's counts)
must hold the same multiset of decoded rows, and every training example kind and split
the same multiset of record bytes. The three runs share one session fixture."""

import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs import daily
from datagen.events import write_export_layout
from transforms.publishing.readers import published_files, published_manifest, read_file_set, \
    read_jsonl_file
from transforms.publishing.tfrecord import read_tfrecord_file
from tests.helpers.paths import SALT_FILE

pytestmark = pytest.mark.jobs

RUN_DATE = "2026-11-26"
DAY = dt.date(2026, 11, 26)
# The features stage (tf.Transform) runs in tests/jobs/test_loaders.py's daily run and in
# tests/features/test_features_job.py; here the daily job runs the other stages.
LOCAL = ["--runner=FnApiRunner", f"--user_id_salt_file={SALT_FILE}",
         "--daily_stages=graph,examples"]
GRAPH_FILE_SETS = ("edges", "neighbors", "nodes", "index")
EXAMPLE_OUTPUTS = tuple(f"examples/{kind}/{split}" for kind in ("skipgram", "sequences", "ranking")
                        for split in ("train", "eval"))
VARIANTS = ("first", "two-workers", "reordered-input")


def day_dir(out, kind):
    return os.path.join(out, kind, f"dt={RUN_DATE}")


def validated_multiset(out):
    paths = published_files(day_dir(out, "validated"), "part")
    table = pa.concat_tables([pq.read_table(p, partitioning=None) for p in paths])
    return sorted((tuple(sorted(row.items())) for row in table.to_pylist()), key=repr)


def quarantine_multiset(out):
    folder = day_dir(out, "quarantine")
    return sorted(line for path in published_files(folder, "quarantine")
                  for line in read_jsonl_file(path))


def graph_multiset(out, file_set):
    """Decoded records, floats as decoded: equal means bit-identical float32."""
    return sorted(tuple(sorted((k, tuple(v)) for k, v in row.items()))
                  for row in read_file_set(day_dir(out, "cooccurrence"), file_set))


def example_records(out, name):
    """Every serialized record of one kind and split, sorted: equal means byte-identical
    records (the encoders write fixed bytes for fixed content)."""
    _, kind, split = name.split("/")
    folder = os.path.join(out, "examples", kind, f"dt={RUN_DATE}")
    return sorted(record for path in published_files(folder, split)
                  for record in read_tfrecord_file(path))


def summary_counts(out):
    """The summary's counts (ints and dicts of ints): what the day held, not when it ran."""
    with open(os.path.join(day_dir(out, "validation"), "summary.json")) as f:
        summary = json.load(f)
    def is_count(v):
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, dict) and v and all(isinstance(x, int) for x in v.values()))
    return {k: v for k, v in summary.items() if is_count(v)}


def content(out):
    got = {"validated": validated_multiset(out), "quarantine": quarantine_multiset(out),
           "summary": summary_counts(out)}
    for file_set in GRAPH_FILE_SETS:
        got[file_set] = graph_multiset(out, file_set)
    for name in EXAMPLE_OUTPUTS:
        got[name] = example_records(out, name)
    return got


@pytest.fixture(scope="session")
def daily_runs(tmp_path_factory, marked_daily_run):
    """The first run is the shared daily run of the marked day (tests/helpers/jobs.py,
    every stage; only the outputs of validation, the graph and the examples are compared);
    the other two run here without the features stage."""
    root = tmp_path_factory.mktemp("determinism")
    table, events, first = marked_daily_run
    # The same rows in reverse order, cut into files of 333 rows: each file name now
    # holds other rows than in the first layout, and the rows of a file are reversed.
    reversed_rows = table.take(pa.array(range(table.num_rows - 1, -1, -1)))
    paths = write_export_layout(reversed_rows, str(root / "events_reordered"),
                                null_partition=DAY, rows_per_file=333)
    assert len(paths) > 5
    outs = {"first": first}
    for name in VARIANTS[1:]:
        folder = str(root / "events_reordered") if name == "reordered-input" else events
        extra = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"] \
            if name == "two-workers" else []
        outs[name] = str(root / f"out-{name}")
        daily.run(LOCAL + extra + [f"--events={folder}", f"--run_date={RUN_DATE}",
                                   "--timezone=Asia/Seoul", f"--output_dir={outs[name]}"])
    return {name: content(out) for name, out in outs.items()}, outs


def test_the_day_is_not_trivial(daily_runs):
    contents, outs = daily_runs
    first = contents["first"]
    summary = first["summary"]
    assert summary["rows_quarantined"] > 0 and summary["duplicates_dropped"] > 0
    assert len(first["validated"]) == summary["rows_valid"] > 2000
    assert len(first["quarantine"]) == summary["rows_quarantined"]
    for file_set in GRAPH_FILE_SETS:
        assert len(first[file_set]) > 20, file_set
    for name in EXAMPLE_OUTPUTS:
        assert len(first[name]) >= 1, name
    assert len(first["examples/sequences/train"]) > 50
    # Two workers ran several bundles; the reordered layout is several files.
    assert published_manifest(day_dir(outs["first"], "cooccurrence"))["run_id"] != \
        published_manifest(day_dir(outs["two-workers"], "cooccurrence"))["run_id"]


@pytest.mark.parametrize("variant", VARIANTS[1:])
@pytest.mark.parametrize("output", ("validated", "quarantine", "summary") + GRAPH_FILE_SETS
                         + EXAMPLE_OUTPUTS)
def test_every_output_is_the_same_multiset(daily_runs, variant, output):
    contents, _ = daily_runs
    assert contents[variant][output] == contents["first"][output]
