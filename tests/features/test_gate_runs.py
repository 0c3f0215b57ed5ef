"""The features gate's files are pieces of their run (transforms/features/gate.py):
named for it, listed by its manifest and committed with the entity's day. A run that
crashes after its gate leaves the published day's files as its manifest lists them; two
runs of one day, their gate writes and commits interleaved at every split point on a
local folder and on the fake object store, leave one complete day whose gate files are
the winner's."""

import json

import pytest
from apache_beam.io.filesystems import FileSystems

from schemas import features as F
from tests.helpers.fake_object_store import FakeObjectStore, patch_local_faults
from tests.helpers.publishing_days import clock, listing, raw
from tests.helpers.turns import turns_on_operations
from transforms.features.gate import GateFeatures, published_gate_files
from transforms.publishing.protocol import CommitLost, check_listed_files, publish_day, \
    read_base, stored_sizes
from transforms.publishing.readers import published_manifest
from transforms.publishing.writers import write_piece

pytestmark = pytest.mark.functions

DAY = "2026-11-26"
RUNS = {"A": "20261127T010000Z-aaaaaaaa", "B": "20261127T010500Z-bbbbbbbb"}
OLD = "20261126T010000Z-01d01d00"
# The ingestion gate's summary of a blessed day, as summary.json holds it.
BLESSED = {"run_date": DAY, "rows_read": 10, "rows_valid": 9, "rows_quarantined": 1,
           "duplicates_dropped": 0, "out_of_span": 0, "blessed": True, "overridden": False,
           "reasons": [], "anomalies": [], "drift": [], "quarantine_fraction": 0.1,
           "max_quarantine_fraction": 0.05, "previous_blessed_date": None,
           "stats_sample_fraction": 1.0, "quarantined_by_reason": {"bad_json": 1}}
PLAN = {"files": [], "used": [], "skipped": [], "rows": 0}


@pytest.fixture(params=["local", "fakeobj"])
def day(request, tmp_path, monkeypatch):
    FakeObjectStore.reset()
    if request.param == "local":
        patch_local_faults(monkeypatch)
        yield str(tmp_path / "out" / "features" / "articles" / f"dt={DAY}")
    else:
        yield f"fakeobj://bucket/out/features/articles/dt={DAY}"
    FakeObjectStore.inject(None)


def statistics(rows):
    from tensorflow_metadata.proto.v0 import statistics_pb2
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.datasets.add(num_examples=rows)
    return stats


def entity_run(day, run_id, version, base=None):
    """One run of the entity's day: the gate (its files named for the run), a data
    piece, the commit; `version` marks the run's files."""
    with open(F.reviewed_schema_path()) as handle:
        schema = handle.read()
    # --allow_feature_anomalies: statistics this bare break the schema; the day is
    # published as overridden, with every gate file.
    gate = GateFeatures(F.ARTICLES, day, schema, True, DAY, {"version": version}, run_id)
    out = next(gate.process(None, statistics(3), statistics(2), BLESSED,
                            {"run_id": f"daily-{version}"}, PLAN, base=base))
    records = list(out["records"]) + list(write_piece(
        day, run_id, "jsonl", "train", 0, [json.dumps({"version": version})], 1 << 20))
    return publish_day(day, run_id, records, {"version": version},
                       ("eval", "stats", "train", "transform"), base=base, clock=clock())


def gate_view(day):
    """The published day's gate summary: (run id, version) it holds."""
    files = published_gate_files(day)
    summary = json.loads(raw(files[F.SUMMARY_FILE]))
    return summary["window"]["version"], sorted(files)


def test_a_run_that_crashes_after_its_gate_leaves_the_published_day_as_listed(day):
    entity_run(day, OLD, "old")
    before = {name: raw(path) for name, path in published_gate_files(day).items()}
    with open(F.reviewed_schema_path()) as handle:
        gate = GateFeatures(F.ARTICLES, day, handle.read(), True, DAY, {"version": "new"},
                            RUNS["A"])
    next(gate.process(None, statistics(5), statistics(4), BLESSED, {"run_id": "d"}, PLAN,
                      base=tuple(read_base(day))))
    # ... and the run crashes: no commit.
    manifest = published_manifest(day)
    check_listed_files(day, manifest, stored_sizes(day))
    assert {name: raw(path) for name, path in published_gate_files(day).items()} == before
    assert any(RUNS["A"] in name for name in listing(day))


def test_two_runs_of_an_entity_day_interleaved_leave_one_complete_day(day, monkeypatch):
    entity_run(day, OLD, "old")
    FakeObjectStore.inject(None)
    entity_run(day, RUNS["A"], "A")
    n = FakeObjectStore.operations + 1
    endings = set()
    for first, second in (("A", "B"), ("B", "A")):
        for k in range(n + 1):
            schedule = [first] * k + [second] * (2 * n) + [first] * (2 * n)
            if day.startswith("fakeobj"):
                FakeObjectStore.reset()
            elif FileSystems.exists(day):
                FileSystems.delete([day])
            entity_run(day, OLD, "old")
            with monkeypatch.context() as patch:
                turns = turns_on_operations(schedule, patch)

                def run(name):
                    turns.step()
                    entity_run(day, RUNS[name], name, base=tuple(read_base(day)))
                    return "committed"
                outcome = turns.play({name: lambda name=name: run(name) for name in RUNS})
            winner = published_manifest(day)["version"]
            assert winner in RUNS, schedule
            check_listed_files(day, published_manifest(day), stored_sizes(day))
            assert gate_view(day) == (winner, sorted(
                list(F.STATS_FILES.values()) + list(F.ANOMALIES_FILES.values())
                + [F.HTML_FILE, F.SUMMARY_FILE])), schedule
            loser = "B" if winner == "A" else "A"
            if outcome[loser] != "committed":
                assert isinstance(outcome[loser], CommitLost), (schedule, outcome[loser])
            endings.add((winner, outcome[loser] == "committed"))
    assert endings == {("A", True), ("B", True), ("A", False), ("B", False)}
