"""CheckEvents (tier 2, under the FnApiRunner) and the tally helpers (tier 1).

One literal day, split over three record batches (one of them empty), exercises
every accounting path: rows outside the span, quarantined rows (first failing
reason, original values kept), legacy names normalised, and duplicate event ids
inside one batch and across batches, where the copy with the smallest
event_timestamp is kept. Every row read lands in exactly one of out_of_span,
rows_quarantined, duplicates_dropped and rows_valid.
"""

import collections
import datetime as dt
import hashlib
import json

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas import contract
from transforms.common.sharding import shard_ids
from transforms.common.span import day_span
from transforms.ingest.quarantine import TALLY_KEYS, CheckEvents, GroupQuarantine, \
    empty_tally, merge_tallies, missing_column_anomalies, quarantine_bucket

SPAN = day_span(dt.date(2026, 11, 26), "Asia/Seoul")  # [2026-11-25T15:00Z, 2026-11-26T15:00Z)
SPAN_HOURS = {"2026-11-25": 9.0, "2026-11-26": 15.0}
UTC = dt.timezone.utc
T = dt.datetime(2026, 11, 26, 3, 4, 5, 123456, tzinfo=UTC)
SEC = dt.timedelta(seconds=1)
US = dt.timedelta(microseconds=1)
RUNNER = "FnApiRunner"


def row(event_id, ts=T, **overrides):
    base = {"event_id": event_id, "event_timestamp": ts, "event_name": contract.ARTICLE_VIEW,
            "source": contract.CLIENT, "user_id": "u1", "article_id": "a1", "region_id": "r1",
            "category_id": "c1", "price": 1000, "platform": "ios", "properties": '{"rank": 3}'}
    assert set(overrides) <= set(base), overrides
    return {**base, **overrides}


def batch(rows):
    return pa.RecordBatch.from_pylist(rows, schema=contract.arrow_schema())


# The day. Comments give each row's fate.
BATCH_A = [
    row("e1"),                                                         # valid
    row("e2", T + 10 * SEC, article_id="late"),                        # duplicate (later copy)
    row("e3", SPAN.end),                                               # out of span (end is open)
    row(None),                                                         # missing_event_id
    row("e5", event_name='bo"gus é'),                                  # unknown_event_name
    row("e6", event_name="item_click"),                                # valid, -> article_view
    row("e7", price=-5),                                               # negative_price
    row("e8", article_id="a8"),                                        # valid
    row("e8", article_id="a8"),                                        # duplicate (same batch)
    row("e9", SPAN.start - US, event_name="bogus", article_id="early"),  # out of span, not bad
]
BATCH_B = [
    row("e2", T, article_id="early"),                                  # valid: smallest timestamp
    row("e2", T + 20 * SEC, article_id="later"),                       # duplicate
    row("e10", SPAN.start),                                            # valid (start is closed)
    row("e9", T, article_id="in_span"),                                # valid: only in-span copy
    row("e7", price=5),                                                # valid: other copy was bad
    row("e11", user_id=None),                                          # missing_user_id
    row("e12", properties="{"),                                        # bad_properties
]
BATCH_EMPTY = []

# (event_id, event_timestamp, event_name, article_id, price) of the rows kept.
VALID = [
    ("e1", T, "article_view", "a1", 1000),
    ("e10", SPAN.start, "article_view", "a1", 1000),
    ("e2", T, "article_view", "early", 1000),
    ("e6", T, "article_view", "a1", 1000),
    ("e7", T, "article_view", "a1", 5),
    ("e8", T, "article_view", "a8", 1000),
    ("e9", T, "article_view", "in_span", 1000),
]

# (file, missing columns) records, as ReadEvents' side output gives them.
MISSING = [("gs://b/events/part-1.parquet", ("platform",)),
           ("gs://b/events/part-0.parquet", ("platform", "properties"))]
ANOMALIES = [
    {"feature": "platform", "severity": "ERROR",
     "description": "column platform of the events contract is missing from 2 input file(s), "
                    "e.g. gs://b/events/part-0.parquet"},
    {"feature": "properties", "severity": "ERROR",
     "description": "column properties of the events contract is missing from 1 input file(s), "
                    "e.g. gs://b/events/part-0.parquet"},
]

COUNTS = {
    "rows_read": 17,
    "out_of_span": 2,
    "rows_quarantined": 5,
    "quarantined_by_reason": {"bad_properties": 1, "missing_event_id": 1,
                              "missing_user_id": 1, "negative_price": 1,
                              "unknown_event_name": 1},
    "duplicates_dropped": 3,
    "rows_valid": 7,
    "input_anomalies": ANOMALIES,
    "missing_partitions": [],
    "new_columns": [],
    # Every row is a client event; partitions are the UTC dates of the timestamps.
    "read_by_source": {"client": len(BATCH_A + BATCH_B)},
    "valid_by_source": {"client": len(VALID)},
    "read_by_partition": dict(sorted(collections.Counter(
        r["event_timestamp"].astimezone(UTC).date().isoformat()
        for r in BATCH_A + BATCH_B).items())),
    "valid_by_partition": dict(sorted(collections.Counter(
        v[1].astimezone(UTC).date().isoformat() for v in VALID).items())),
    "span_hours": SPAN_HOURS,
}


def iso(ts):
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expected_line(r, reason, detail):
    """The documented line format: json.dumps of the original row (contract column order,
    event_timestamp as ISO-8601 UTC with microseconds), then reason and detail."""
    out = {name: r[name] for name in contract.COLUMN_NAMES}
    out["event_timestamp"] = iso(r["event_timestamp"])
    out["_error_reason"], out["_error_detail"] = reason, detail
    return json.dumps(out, ensure_ascii=False)


def json_detail(text):
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return f"properties is not valid JSON: {err}"
    raise AssertionError(text)


QUARANTINE = [
    expected_line(BATCH_A[3], "missing_event_id", "event_id is null"),
    expected_line(BATCH_A[4], "unknown_event_name",
                  'event_name="bo\\"gus é" is not a known event name'),
    expected_line(BATCH_A[6], "negative_price", "price=-5 is negative"),
    expected_line(BATCH_B[5], "missing_user_id", "user_id is null for event_name=article_view"),
    expected_line(BATCH_B[6], "bad_properties", json_detail("{")),
]


def valid_rows(element):
    """(shard, table) -> (shard, event_id, ts, event_name, article_id, price) per row."""
    shard, table = element
    assert table.schema == contract.arrow_schema()
    return [(shard, r["event_id"], r["event_timestamp"], r["event_name"], r["article_id"],
             r["price"]) for r in table.to_pylist()]


def shard_tables(element):
    """(shard, table) -> (shard, event ids in table order)."""
    shard, table = element
    return shard, tuple(table.column("event_id").to_pylist())


def expected_shard_of(event_id, num_shards):
    return int(shard_ids(pa.array([event_id]), num_shards)[0])


@pytest.mark.composites
@pytest.mark.parametrize("num_shards", [1, 3])
def test_check_events_accounts_for_every_row(num_shards):
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        out = {"batches": p | "Batches" >> beam.Create(
                   [batch(BATCH_A), batch(BATCH_EMPTY), batch(BATCH_B)]),
               "missing_columns": p | "Missing" >> beam.Create(MISSING)} \
            | CheckEvents(SPAN, num_shards)
        assert_that(out["counts"], equal_to([COUNTS]), label="Counts")
        assert_that(out["quarantine"], equal_to(QUARANTINE), label="Quarantine")
        assert_that(out["valid"] | beam.FlatMap(valid_rows),
                    equal_to([(expected_shard_of(v[0], num_shards),) + v for v in VALID]),
                    label="Valid")
        # One table per non-empty shard, its rows sorted by event_id (byte order).
        by_shard = {}
        for v in VALID:
            by_shard.setdefault(expected_shard_of(v[0], num_shards), []).append(v[0])
        assert_that(out["valid"] | "ShardTables" >> beam.Map(shard_tables),
                    equal_to([(s, tuple(sorted(ids))) for s, ids in by_shard.items()]),
                    label="Tables")
    assert sum(COUNTS[k] for k in ("out_of_span", "rows_quarantined", "duplicates_dropped",
                                   "rows_valid")) == COUNTS["rows_read"]
    if num_shards == 3:
        # The case is not degenerate: the valid ids really spread over several shards.
        assert len(by_shard) > 1


@pytest.mark.composites
def test_duplicates_split_across_batches_meet_in_one_shard():
    """The same id in five batches (each copy alone in its batch): one row survives,
    the one with the smallest timestamp, whatever the batch order."""
    copies = [row("dup", T + k * SEC, article_id=f"a{k}") for k in (3, 1, 4, 0, 2)]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        out = {"batches": p | "Batches" >> beam.Create([batch([c]) for c in copies]),
               "missing_columns": p | "Missing" >> beam.Create([])} | CheckEvents(SPAN, 4)
        assert_that(out["valid"] | beam.FlatMap(valid_rows),
                    equal_to([(expected_shard_of("dup", 4), "dup", T, "article_view", "a0",
                               1000)]), label="Valid")
        assert_that(out["counts"], equal_to([dict(
            empty_tally(), rows_read=5, duplicates_dropped=4, rows_valid=1,
            read_by_source={"client": 5}, valid_by_source={"client": 1},
            read_by_partition={"2026-11-26": 5}, valid_by_partition={"2026-11-26": 1},
            span_hours=SPAN_HOURS)]), label="Counts")
        assert_that(out["quarantine"], equal_to([]), label="Quarantine")


@pytest.mark.composites
def test_empty_day_gives_one_all_zero_tally():
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        out = {"batches": p | "Batches" >> beam.Create([]),
               "missing_columns": p | "Missing" >> beam.Create([])} | CheckEvents(SPAN, 3)
        assert_that(out["counts"], equal_to([{
            "rows_read": 0, "out_of_span": 0, "rows_quarantined": 0,
            "quarantined_by_reason": {}, "duplicates_dropped": 0, "rows_valid": 0,
            "input_anomalies": [], "missing_partitions": [], "new_columns": [],
            "read_by_source": {}, "valid_by_source": {}, "read_by_partition": {},
            "valid_by_partition": {}, "span_hours": SPAN_HOURS}]),
            label="Counts")
        assert_that(out["valid"], equal_to([]), label="Valid")
        assert_that(out["quarantine"], equal_to([]), label="Quarantine")


@pytest.mark.functions
def test_num_shards_is_checked_at_construction():
    with pytest.raises(ValueError, match="^--dedup_shards=-1 must be 'auto' or a whole number "
                                         ">= 1$"):
        CheckEvents(SPAN, -1)
    with pytest.raises(ValueError, match="^--max_rows_per_shard=0 must be >= 1$"):
        CheckEvents(SPAN, 0, 0)


# The literal day has 10 checked valid rows (7 kept + 3 duplicates) before de-duplication:
# auto with 2 rows a shard gives 5 shards, with the default a single one.
@pytest.mark.composites
@pytest.mark.parametrize("requested,max_rows,resolved", [
    (1, 1_000_000, 1), (7, 2, 7), (0, 2, 5), (0, 1_000_000, 1), (0, 3, 4)])
def test_shard_counts_fixed_or_auto_give_the_same_rows(requested, max_rows, resolved):
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        out = {"batches": p | "Batches" >> beam.Create(
                   [batch(BATCH_A), batch(BATCH_EMPTY), batch(BATCH_B)]),
               "missing_columns": p | "Missing" >> beam.Create(MISSING)} \
            | CheckEvents(SPAN, requested, max_rows)
        assert_that(out["dedup_shards"], equal_to([resolved]), label="Resolved")
        assert_that(out["counts"], equal_to([COUNTS]), label="Counts")
        assert_that(out["valid"] | beam.FlatMap(valid_rows),
                    equal_to([(expected_shard_of(v[0], resolved),) + v for v in VALID]),
                    label="Valid")
        assert_that(out["valid"] | "Shards" >> beam.Map(lambda e: e[0]),
                    equal_to(sorted({expected_shard_of(v[0], resolved) for v in VALID})),
                    label="OneTablePerShard")
    if resolved >= 4:
        assert len({expected_shard_of(v[0], resolved) for v in VALID}) > 2


@pytest.mark.composites
def test_an_empty_day_resolves_auto_to_one_shard():
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        out = {"batches": p | "Batches" >> beam.Create([]),
               "missing_columns": p | "Missing" >> beam.Create([])} | CheckEvents(SPAN, 0, 2)
        assert_that(out["dedup_shards"], equal_to([1]))


# ---------------------------------------------------------------------------- quarantine pieces

@pytest.mark.functions
def test_quarantine_bucket_is_stable_and_in_range():
    assert quarantine_bucket("a line", 1) == 0
    buckets = [quarantine_bucket(f"line {i}", 5) for i in range(200)]
    assert set(buckets) == set(range(5))
    # sha1("line 0") starts 0x7c0b1a3d..: its first 8 bytes modulo 5.
    assert quarantine_bucket("line 0", 5) == int(hashlib.sha1(b"line 0").hexdigest()[:16], 16) % 5


@pytest.mark.composites
def test_group_quarantine_keeps_every_line_in_stable_pieces():
    lines = [f'{{"i": {i % 13}}}' for i in range(40)]   # with repeats: every copy stays
    counts = dict(empty_tally(), rows_quarantined=len(lines))
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        pieces = ({"lines": p | "Lines" >> beam.Create(lines),
                   "counts": p | "Counts" >> beam.Create([counts])}
                  | GroupQuarantine(max_rows_per_shard=10))
        expected = {}
        for line in lines:
            expected.setdefault(quarantine_bucket(line, 4), []).append(line)
        assert_that(pieces, equal_to([("quarantine", b, sorted(v)) for b, v in expected.items()]))


# ---------------------------------------------------------------------------- tier 1: tallies

@pytest.mark.functions
def test_empty_tally():
    assert empty_tally() == {"rows_read": 0, "out_of_span": 0, "rows_quarantined": 0,
                             "duplicates_dropped": 0, "rows_valid": 0,
                             "quarantined_by_reason": {}, "input_anomalies": [],
                             "missing_partitions": [], "new_columns": [],
                             "read_by_source": {}, "valid_by_source": {},
                             "read_by_partition": {}, "valid_by_partition": {}}
    assert TALLY_KEYS == ("rows_read", "out_of_span", "rows_quarantined", "duplicates_dropped",
                          "rows_valid")
    # A fresh dict each time: merging never aliases a shared default.
    first = empty_tally()
    first["quarantined_by_reason"]["x"] = 1
    assert empty_tally()["quarantined_by_reason"] == {}


@pytest.mark.functions
def test_merge_tallies_sums_counts_and_reasons():
    a = dict(empty_tally(), rows_read=10, out_of_span=1, rows_quarantined=3,
             quarantined_by_reason={"negative_price": 1, "bad_properties": 2})
    b = dict(empty_tally(), duplicates_dropped=2, rows_valid=4)
    c = {"rows_read": 5, "rows_quarantined": 1, "quarantined_by_reason": {"bad_properties": 1}}
    merged = merge_tallies([a, b, c])
    assert merged == {"rows_read": 15, "out_of_span": 1, "rows_quarantined": 4,
                      "duplicates_dropped": 2, "rows_valid": 4,
                      "quarantined_by_reason": {"bad_properties": 3, "negative_price": 1},
                      "input_anomalies": [], "missing_partitions": [], "new_columns": [],
                      "read_by_source": {}, "valid_by_source": {}, "read_by_partition": {},
                      "valid_by_partition": {}}
    # Reasons come out sorted by name, whatever order they were merged in.
    assert list(merged["quarantined_by_reason"]) == ["bad_properties", "negative_price"]
    # Merging is order-independent and leaves its inputs alone.
    assert merge_tallies([c, b, a]) == merged
    assert a["quarantined_by_reason"] == {"negative_price": 1, "bad_properties": 2}


@pytest.mark.functions
def test_merge_tallies_keeps_one_anomaly_per_feature():
    x = {"feature": "platform", "severity": "ERROR", "description": "first"}
    y = {"feature": "platform", "severity": "ERROR", "description": "second"}
    z = {"feature": "category_id", "severity": "ERROR", "description": "z"}
    merged = merge_tallies([dict(empty_tally(), input_anomalies=[x]),
                            dict(empty_tally(), input_anomalies=[y, z])])
    # Sorted by feature; the first seen wins for a feature given twice.
    assert merged["input_anomalies"] == [z, x]


@pytest.mark.functions
def test_merge_of_nothing_is_the_empty_tally():
    assert merge_tallies([]) == empty_tally()
    assert merge_tallies([empty_tally(), empty_tally()]) == empty_tally()


@pytest.mark.functions
def test_missing_column_anomalies():
    assert missing_column_anomalies(MISSING) == ANOMALIES
    assert missing_column_anomalies([]) == []
    # A file that lacks nothing adds nothing.
    assert missing_column_anomalies([("f", ())]) == []
    one = missing_column_anomalies([("gs://b/z.parquet", ("user_id",)),
                                    ("gs://b/a.parquet", ("user_id",)),
                                    ("gs://b/m.parquet", ("user_id",))])
    assert one == [{"feature": "user_id", "severity": "ERROR",
                    "description": "column user_id of the events contract is missing from "
                                   "3 input file(s), e.g. gs://b/a.parquet"}]


# ---------------------------------------------------------------------------------------------
# Volume counts (summary.json "volume")

@pytest.mark.functions
def test_volume_counts_by_source_and_utc_partition():
    from transforms.ingest.quarantine import volume_counts
    day = 1_764_115_200_000_000        # 2025-11-26T00:00:00Z in microseconds
    batch = pa.table({
        "source": pa.array(["client", "server", "client", "bogus", None]),
        "event_timestamp": pa.array([day - 1, day, day + 5, None, day],
                                    pa.timestamp("us", tz="UTC"))})
    assert volume_counts(batch) == ({"client": 2, "other": 2, "server": 1},
                                    {"2025-11-25": 1, "2025-11-26": 3, "none": 1})
    assert volume_counts(batch.slice(0, 0)) == ({}, {})


@pytest.mark.functions
def test_partition_hours_cover_the_span_and_follow_daylight_saving():
    from transforms.common.span import day_span
    from transforms.ingest.quarantine import partition_hours
    assert partition_hours(day_span(dt.date(2026, 11, 26), "Asia/Seoul")) == {
        "2026-11-25": 9.0, "2026-11-26": 15.0}
    assert partition_hours(day_span(dt.date(2026, 11, 26), "UTC")) == {"2026-11-26": 24.0}
    # New York's spring-forward day has 23 hours, its fall-back day 25.
    assert partition_hours(day_span(dt.date(2026, 3, 8), "America/New_York")) == {
        "2026-03-08": 19.0, "2026-03-09": 4.0}
    assert partition_hours(day_span(dt.date(2026, 11, 1), "America/New_York")) == {
        "2026-11-01": 20.0, "2026-11-02": 5.0}


@pytest.mark.functions
def test_tallies_merge_volume_counts_and_the_summary_lists_them():
    from transforms.ingest.quarantine import empty_tally, merge_tallies, volume_summary
    a = dict(empty_tally(), read_by_source={"client": 3}, read_by_partition={"2026-11-25": 3})
    b = dict(empty_tally(), read_by_source={"client": 1, "server": 2},
             valid_by_source={"client": 4}, valid_by_partition={"2026-11-26": 4})
    total = merge_tallies([a, b])
    assert total["read_by_source"] == {"client": 4, "server": 2}
    assert volume_summary(dict(total, span_hours={"2026-11-25": 9.0, "2026-11-26": 15.0})) == {
        "by_source": {"client": {"rows_read": 4, "rows_valid": 4},
                      "server": {"rows_read": 2, "rows_valid": 0}},
        "by_partition": {
            "2026-11-25": {"rows_read": 3, "rows_valid": 0, "span_hours": 9.0},
            "2026-11-26": {"rows_read": 0, "rows_valid": 4, "span_hours": 15.0}}}
