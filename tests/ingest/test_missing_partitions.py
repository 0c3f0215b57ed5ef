"""Missing UTC partitions and new input columns (issue 11, part 1).

Tier 1: the plain functions of transforms/read.py. Tier 2: ReadEvents + CheckEvents on an
export layout in a temporary folder, and the BigQuery reader's tally step on batches. The
day with nothing at all is refused by the gate as empty (transforms.ingest.validation.gate_decision).
"""

import datetime as dt

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas import contract
from transforms.common.span import day_span
from transforms.ingest import read
from transforms.ingest.quarantine import CheckEvents
from transforms.ingest.validation import EMPTY_DAY, gate_decision

RUNNER = "FnApiRunner"
SEOUL_DAY = day_span(dt.date(2026, 11, 26), "Asia/Seoul")   # needs dt=2026-11-25 and 2026-11-26
UTC = dt.timezone.utc


def rows(n, stamp, prefix="e"):
    return [{"event_id": f"{prefix}{i}", "event_timestamp": stamp, "event_name": "article_view",
             "source": "client", "user_id": "u1", "article_id": f"a{i % 3}", "region_id": "r1",
             "category_id": "c1", "price": 1000, "platform": "ios", "properties": "{}"}
            for i in range(n)]


def write_partition(root, date, table_rows, extra=None, name="part-0.parquet"):
    table = pa.Table.from_pylist(table_rows, schema=contract.arrow_schema())
    for column, values in (extra or {}).items():
        table = table.append_column(column, values)
    folder = root / f"dt={date}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(folder / name))


# ---------------------------------------------------------------------------- tier 1

@pytest.mark.functions
def test_missing_partitions_are_the_needed_dates_without_data():
    needed = ["2026-11-25", "2026-11-26"]
    assert read.missing_partitions(needed, {"2026-11-26": 3}) == ["2026-11-25"]
    assert read.missing_partitions(needed, {"2026-11-25": 0, "2026-11-26": 1}) == ["2026-11-25"]
    assert read.missing_partitions(needed, {}) == needed
    assert read.missing_partitions(needed, {"2026-11-25": 1, "2026-11-26": 1,
                                            "2026-11-27": 0}) == []


@pytest.mark.functions
def test_require_partitions_fails_naming_every_missing_partition():
    with pytest.raises(read.MissingPartitionsError) as err:
        read.require_partitions({}, ["2026-11-25", "2026-11-26"], "/data/events", False,
                                "have no Parquet file")
    message = str(err.value)
    assert "2 of the 2 UTC partition(s)" in message
    assert "/data/events: dt=2026-11-25, dt=2026-11-26." in message
    assert "--allow_missing_partitions" in message


@pytest.mark.functions
def test_require_partitions_when_allowed_records_them():
    assert read.require_partitions({"2026-11-26": 4}, ["2026-11-25", "2026-11-26"], "x", True,
                                   "") == {"missing_partitions": ["2026-11-25"],
                                           "new_columns": []}
    assert read.require_partitions({"2026-11-25": 1, "2026-11-26": 4},
                                   ["2026-11-25", "2026-11-26"], "x", False, "") == {
        "missing_partitions": [], "new_columns": []}


@pytest.mark.functions
def test_rows_by_utc_date_counts_non_null_timestamps_per_date():
    stamps = pa.array([dt.datetime(2026, 11, 25, 23, 59, 59, 999999, UTC),
                       dt.datetime(2026, 11, 26, 0, 0, tzinfo=UTC), None,
                       dt.datetime(1969, 12, 31, 23, 0, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    extremes = pa.array([-2 ** 63, 2 ** 63 - 1], pa.int64()).cast(pa.timestamp("us", "UTC"))
    table = pa.Table.from_pylist(rows(6, None), schema=contract.arrow_schema())
    batch = table.set_column(1, "event_timestamp", pa.concat_arrays([stamps, extremes]))
    batch = batch.combine_chunks().to_batches()[0]
    assert read.rows_by_utc_date(batch) == {"2026-11-25": 1, "2026-11-26": 1, "1969-12-31": 1}


@pytest.mark.functions
def test_new_columns_of_export_and_bigquery_schemas():
    schema = contract.arrow_schema().append(pa.field("experiment", pa.string())).append(
        pa.field("score", pa.float64()))
    assert read.new_columns(schema) == [("experiment", "string"), ("score", "double")]
    assert read.new_columns(contract.arrow_schema()) == []
    fields = [(n, t, m) for n, t, m in contract.COLUMNS] + [("ab_group", "STRING", "NULLABLE")]
    assert read.bigquery_new_columns(fields) == [("ab_group", "STRING")]
    assert read.new_columns_tally([("f1", (("b", "int64"), ("a", "string"))),
                                   ("f2", (("a", "string"),))]) == {
        "missing_partitions": [],
        "new_columns": [{"column": "a", "type": "string"}, {"column": "b", "type": "int64"}]}


@pytest.mark.functions
def test_read_events_checks_the_flag_early():
    read.ReadEvents("/data/events", SEOUL_DAY)   # the default: missing partitions fail
    with pytest.raises(ValueError, match="--allow_missing_partitions='yes' must be true or false"):
        read.ReadEvents("/data/events", SEOUL_DAY, "yes")


# ---------------------------------------------------------------------------- tier 2: export layout

def counts_of(events, allow):
    """Runs ReadEvents + CheckEvents and returns the one counts dict."""
    import json
    import os
    import tempfile
    out = tempfile.mkdtemp()
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        counts = (p | read.ReadEvents(events, SEOUL_DAY, allow) | CheckEvents(SEOUL_DAY, 1))["counts"]
        _ = counts | beam.Map(lambda c: open(os.path.join(out, "counts.json"), "w").write(
            json.dumps(c)))
    with open(os.path.join(out, "counts.json")) as handle:
        return json.loads(handle.read())


@pytest.mark.composites
def test_an_absent_partition_fails_the_job_naming_it(tmp_path):
    write_partition(tmp_path, "2026-11-26", rows(3, dt.datetime(2026, 11, 26, 1, tzinfo=UTC)))
    with pytest.raises(Exception, match=r"1 of the 2 UTC partition\(s\).*: dt=2026-11-25\. "):
        counts_of(str(tmp_path), False)


@pytest.mark.composites
def test_a_folder_without_parquet_files_is_missing(tmp_path):
    write_partition(tmp_path, "2026-11-26", rows(3, dt.datetime(2026, 11, 26, 1, tzinfo=UTC)))
    (tmp_path / "dt=2026-11-25").mkdir()
    (tmp_path / "dt=2026-11-25" / "_SUCCESS").write_text("")
    with pytest.raises(Exception, match=r"have no Parquet file .*: dt=2026-11-25\. "):
        counts_of(str(tmp_path), False)


@pytest.mark.composites
def test_allowed_missing_partitions_and_new_columns_reach_the_counts(tmp_path):
    stamp = dt.datetime(2026, 11, 26, 1, tzinfo=UTC)   # 10:00 in Seoul
    write_partition(tmp_path, "2026-11-26", rows(3, stamp),
                    extra={"experiment": pa.array(["a", "b", None]),
                           "score": pa.array([1.5, None, 2.0])})
    write_partition(tmp_path, "2026-11-26", rows(2, stamp, prefix="f"), name="part-1.parquet",
                    extra={"experiment": pa.array(["c", "d"])})
    counts = counts_of(str(tmp_path), True)
    assert counts["missing_partitions"] == ["2026-11-25"]
    assert counts["new_columns"] == [{"column": "experiment", "type": "string"},
                                     {"column": "score", "type": "double"}]
    assert (counts["rows_read"], counts["rows_valid"]) == (5, 5)


@pytest.mark.composites
def test_all_partitions_present_records_nothing(tmp_path):
    write_partition(tmp_path, "2026-11-25", rows(2, dt.datetime(2026, 11, 25, 16, tzinfo=UTC)))
    write_partition(tmp_path, "2026-11-26", rows(3, dt.datetime(2026, 11, 26, 1, tzinfo=UTC),
                                                 prefix="f"))
    counts = counts_of(str(tmp_path), False)
    assert counts["missing_partitions"] == [] and counts["new_columns"] == []
    assert (counts["rows_read"], counts["rows_valid"]) == (5, 5)


@pytest.mark.composites
def test_a_day_with_nothing_is_read_when_allowed_and_refused_by_the_gate(tmp_path):
    counts = counts_of(str(tmp_path / "nothing"), True)
    assert counts["missing_partitions"] == ["2026-11-25", "2026-11-26"]
    assert counts["rows_read"] == 0 and counts["rows_valid"] == 0
    decision = gate_decision(counts, [], 0.05, allow_anomalies=True)
    assert decision["blessed"] is False and EMPTY_DAY in decision["reasons"]


# ---------------------------------------------------------------------------- tier 2: BigQuery tally

def batch_of(table_rows):
    return pa.Table.from_pylist(table_rows, schema=contract.arrow_schema()).to_batches()[0]


@pytest.mark.composites
def test_bigquery_missing_date_fails_the_job_naming_it():
    batches = [batch_of(rows(3, dt.datetime(2026, 11, 26, 1, tzinfo=UTC)))]
    with pytest.raises(Exception, match=r"have no rows in bq://p:d\.t: dt=2026-11-25\. "):
        with test_pipeline.TestPipeline(runner=RUNNER) as p:
            read.tally_bigquery_read(p | "Batches" >> beam.Create(batches),
                                     p | "Checked" >> beam.Create([[]]), "p:d.t",
                                     ["2026-11-25", "2026-11-26"], False)


@pytest.mark.composites
def test_bigquery_allowed_missing_dates_and_new_columns_are_tallied():
    batches = [batch_of(rows(3, dt.datetime(2026, 11, 26, 1, tzinfo=UTC))),
               batch_of(rows(1, None))]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        tally = read.tally_bigquery_read(
            p | "Batches" >> beam.Create(batches),
            p | "Checked" >> beam.Create([[("ab_group", "STRING")]]), "p:d.t",
            ["2026-11-25", "2026-11-26"], True)
        assert_that(tally, equal_to([
            {"missing_partitions": ["2026-11-25"], "new_columns": []},
            {"missing_partitions": [], "new_columns": [{"column": "ab_group",
                                                        "type": "STRING"}]}]))


@pytest.mark.composites
def test_bigquery_empty_read_misses_every_date_when_allowed():
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        tally = read.tally_bigquery_read(
            p | "Batches" >> beam.Create([], reshuffle=False),
            p | "Checked" >> beam.Create([[]]), "p:d.t", ["2026-11-25", "2026-11-26"], True)
        assert_that(tally, equal_to([
            {"missing_partitions": ["2026-11-25", "2026-11-26"], "new_columns": []},
            {"missing_partitions": [], "new_columns": []}]))


# ---------------------------------------------------------------------------- tier 3: the job

@pytest.mark.jobs
def test_the_job_records_allowed_missing_partitions_in_summary_json(tmp_path):
    """validate_events passes --allow_missing_partitions to the reader, and summary.json
    says which partitions were missing (here the Seoul day's first UTC date)."""
    import json
    import shutil

    from beam_jobs import validate_events
    from datagen.events import generate_events, write_export_layout
    day = generate_events(3000, dt.date(2026, 11, 26), seed=8)
    write_export_layout(day.table, str(tmp_path / "events"), null_partition=dt.date(2026, 11, 26),
                        drop_columns=day.drop_columns)
    shutil.rmtree(tmp_path / "events" / "dt=2026-11-25")
    out = str(tmp_path / "out")
    argv = ["--runner=FnApiRunner", f"--events={tmp_path / 'events'}",
            "--run_date=2026-11-26", f"--output_dir={out}"]
    with pytest.raises(Exception, match=r"dt=2026-11-25\. "):
        validate_events.run(argv)
    validate_events.run(argv + ["--allow_missing_partitions"])
    with open(tmp_path / "out" / "validation" / "dt=2026-11-26" / "summary.json") as handle:
        summary = json.load(handle)
    assert summary["missing_partitions"] == ["2026-11-25"]
    assert summary["new_columns"] == []
    assert summary["rows_read"] == summary["out_of_span"] + summary["rows_quarantined"] + \
        summary["duplicates_dropped"] + summary["rows_valid"]
    assert summary["rows_valid"] > 0
