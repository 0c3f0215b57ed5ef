"""Bad input (issue 11, part 2): extreme timestamps, a user with 100k events, Unicode and
very long strings in every string column, and property-based tests of the row parser
(conform, rows_to_batch) and the checks (check_rows, quarantine_lines). Nothing raises and
every row read is out of span, quarantined with a reason, a dropped duplicate or valid."""

import datetime as dt
import json
import os
import tempfile

import pytest
import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing import test_pipeline
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import contract
from transforms.common.span import day_span
from transforms.ingest import checks, read
from transforms.ingest.quarantine import CheckEvents, CheckRowsFn, DropDuplicatesFn, \
    merge_tallies, shard_by_event_id

RUNNER = "FnApiRunner"
UTC = dt.timezone.utc
DAY = day_span(dt.date(2026, 11, 26), "UTC")   # one partition: dt=2026-11-26
IN_SPAN = dt.datetime(2026, 11, 26, 12, tzinfo=UTC)
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
STRING_COLUMNS = [n for n, t, _ in contract.COLUMNS if t == "STRING"]


def row(i, **values):
    base = {"event_id": f"e{i}", "event_timestamp": IN_SPAN, "event_name": "article_view",
            "source": "client", "user_id": "u1", "article_id": "a1", "region_id": "r1",
            "category_id": "c1", "price": 1000, "platform": "ios", "properties": "{}"}
    base.update(values)
    return base


def table_of(rows):
    return pa.Table.from_pylist(rows, schema=contract.arrow_schema())


def counts_of(events, span, **check_kwargs):
    out = tempfile.mkdtemp()
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        checked = p | read.ReadEvents(events, span) | CheckEvents(span, **check_kwargs)
        _ = checked["counts"] | beam.Map(
            lambda c: open(os.path.join(out, "c.json"), "w").write(json.dumps(c)))
    with open(os.path.join(out, "c.json")) as handle:
        return json.loads(handle.read())


def assert_accounted(counts):
    assert counts["rows_read"] == counts["out_of_span"] + counts["rows_quarantined"] + \
        counts["duplicates_dropped"] + counts["rows_valid"]


# ---------------------------------------------------------------------------- timestamps

def extreme_stamps_us():
    return [INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1,
            int(dt.datetime(9999, 12, 31, 23, 59, 59, 999999, UTC).timestamp() * 1e6),
            int(dt.datetime(3000, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000,
            int(dt.datetime(2014, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * 1_000_000,
            0, -1]


@pytest.mark.functions
def test_conform_saturates_and_floors_other_units_without_raising():
    seconds = pa.array([INT64_MAX, INT64_MIN, 1_795_000_000, None], pa.timestamp("s", "UTC"))
    got = read.utc_microseconds(seconds).cast(pa.int64()).to_pylist()
    assert got == [INT64_MAX, INT64_MIN, 1_795_000_000_000_000, None]
    millis = pa.array([INT64_MAX, INT64_MIN, -1], pa.timestamp("ms"))
    assert read.utc_microseconds(millis).cast(pa.int64()).to_pylist() == [
        INT64_MAX, INT64_MIN, -1000]
    nanos = pa.array([1_795_662_245_123_456_789, -1, INT64_MIN, INT64_MAX], pa.timestamp("ns"))
    assert read.utc_microseconds(nanos).cast(pa.int64()).to_pylist() == [
        1_795_662_245_123_456, -1, INT64_MIN // 1000, INT64_MAX // 1000]


@pytest.mark.composites
def test_extreme_timestamps_are_out_of_span_and_never_lost(tmp_path):
    """Export files in us, s and ns with far-future, pre-2015 and int64-extreme stamps."""
    folder = tmp_path / "dt=2026-11-26"
    folder.mkdir()
    stamps = extreme_stamps_us()
    n = len(stamps)
    us_rows = [row(i) for i in range(n)] + [row(n, event_timestamp=None), row(n + 1)]
    table = table_of(us_rows).set_column(
        1, "event_timestamp", pa.array(stamps + [None, int(IN_SPAN.timestamp() * 1e6)],
                                       pa.int64()).cast(pa.timestamp("us", "UTC")))
    pq.write_table(table, str(folder / "us.parquet"))
    for unit, values in (("s", [INT64_MIN, INT64_MAX, 0, int(IN_SPAN.timestamp())]),
                         ("ns", [INT64_MIN, INT64_MAX, 1, int(IN_SPAN.timestamp()) * 10 ** 9 + 7])):
        other = table_of([row(f"{unit}{i}") for i in range(len(values))]).set_column(
            1, "event_timestamp", pa.array(values, pa.timestamp(unit)))
        pq.write_table(other, str(folder / f"{unit}.parquet"), coerce_timestamps=None,
                       allow_truncated_timestamps=False, version="2.6")
    counts = counts_of(str(tmp_path), DAY, dedup_shards=1)
    assert counts["rows_read"] == n + 2 + 8
    assert counts["out_of_span"] == n + 3 + 3
    assert counts["quarantined_by_reason"] == {"bad_timestamp": 1}
    assert (counts["rows_valid"], counts["duplicates_dropped"]) == (3, 0)   # one per file
    assert_accounted(counts)


@pytest.mark.functions
def test_rows_to_batch_handles_every_timestamp_form():
    values = [dt.datetime.max.replace(tzinfo=UTC), dt.datetime.min,
              dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))),
              dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-12))),
              "2014-06-01T00:00:00Z", "not a time", "", 12345, None,
              IN_SPAN.astimezone(dt.timezone(dt.timedelta(hours=9))),
              "2026-11-26 12:00:00 UTC"]
    batch = read.rows_to_batch([row(i, event_timestamp=v) for i, v in enumerate(values)])
    micros = batch.column("event_timestamp").cast(pa.int64()).to_pylist()
    assert micros[0] == 253402300799999999 and micros[1] == -62135596800000000
    assert micros[2] == -62135596800000000 - 14 * 3600 * 10 ** 6
    assert micros[5:9] == [None, None, None, None]
    assert micros[9] == micros[10] == int(IN_SPAN.timestamp()) * 10 ** 6
    result = checks.check_rows(batch, DAY.start_us, DAY.end_us)
    assert result.out_of_span == 5
    assert checks.reason_counts(result.quarantined) == {"bad_timestamp": 4}
    assert result.valid.num_rows == 2


# ---------------------------------------------------------------------------- a heavy user

@pytest.mark.functions
def test_a_user_with_100k_events_goes_through_the_checks():
    """CheckEvents's DoFns called directly on 100k rows of one user (with 100 retries)."""
    n = 100_000
    base = int(IN_SPAN.timestamp()) * 10 ** 6
    ids = [f"e{i}" for i in range(n - 100)] + [f"e{i}" for i in range(100)]   # 100 retries
    table = pa.table({
        "event_id": ids,
        "event_timestamp": pa.array(base + np.arange(n, dtype=np.int64) * 100_000,
                                    pa.int64()).cast(pa.timestamp("us", "UTC")),
        "event_name": ["article_view"] * n, "source": ["client"] * n, "user_id": ["u-heavy"] * n,
        "article_id": [f"a{i % 997}" for i in range(n)], "region_id": ["r1"] * n,
        "category_id": ["c1"] * n, "price": pa.array([1000] * n, pa.int64()),
        "platform": ["web"] * n, "properties": ["{}"] * n}, schema=contract.arrow_schema())
    # The CheckEvents stage's DoFns called directly (a pipeline adds only Beam's overhead):
    # check each batch, shard by event id, de-duplicate each shard.
    check = CheckRowsFn(DAY.start_us, DAY.end_us)
    tallies, valid = [], []
    for batch in table.to_batches(max_chunksize=20_000):
        for out in check.process(batch):
            if isinstance(out, beam.pvalue.TaggedOutput):
                assert out.tag == CheckRowsFn.TALLY
                tallies.append(out.value)
            else:
                valid.append(out)
    shards = {}
    for part in valid:
        for shard, sub in shard_by_event_id(part, 4):
            shards.setdefault(shard, []).append(sub)
    kept = []
    for element in shards.items():
        for out in DropDuplicatesFn().process(element):
            if isinstance(out, beam.pvalue.TaggedOutput):
                tallies.append(out.value)
            else:
                kept.append(out[1])
    counts = merge_tallies(tallies)
    assert (counts["rows_read"], counts["rows_valid"], counts["duplicates_dropped"]) == (
        n, n - 100, 100)
    assert counts["out_of_span"] == counts["rows_quarantined"] == 0
    assert_accounted(counts)
    users = pa.concat_tables(kept).column("user_id").unique().to_pylist()
    assert users == ["u-heavy"]


# ---------------------------------------------------------------------------- strings

STRANGE = {
    "multibyte": "당근마켓-中古-ñ",
    "emoji": "🥕👩‍👩‍👧🏳️‍🌈",
    "rtl": "\u202eמוצר-سلعة\u200f",
    "nul": "a\x00b",
    "long": "x" * 100_000,
}


@pytest.mark.functions
def test_unicode_and_long_strings_in_every_string_column(tmp_path):
    """Each strange value in each string column, through Parquet, the reader, the checks and
    the quarantine's JSON lines: every row accounted for, values kept byte for byte."""
    rows, i = [], 0
    for column in STRING_COLUMNS:
        for kind, value in STRANGE.items():
            if column == "properties":
                value = json.dumps({"q": value}, ensure_ascii=False) if kind != "nul" else value
            rows.append(row(i, **{column: value}))
            i += 1
    folder = tmp_path / "dt=2026-11-26"
    folder.mkdir()
    pq.write_table(table_of(rows), str(folder / "part-0.parquet"))
    batches = []
    for path in read.list_parquet_files(str(folder)):
        batches += [b for b in read.ReadParquetFile().process(path) if isinstance(b, pa.RecordBatch)]
    batch = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
    assert batch.to_pylist() == table_of(rows).to_pylist()
    result = checks.check_rows(batch, DAY.start_us, DAY.end_us)
    assert result.valid.num_rows + result.quarantined.num_rows == len(rows)
    reasons = dict(zip(result.quarantined.column("event_id").to_pylist(),
                       result.quarantined.column(checks.ERROR_REASON).to_pylist()))
    expected = {}
    for j, r in enumerate(rows):
        column = STRING_COLUMNS[j // len(STRANGE)]
        kind = list(STRANGE)[j % len(STRANGE)]
        if column == "event_name":
            expected[r["event_id"]] = "unknown_event_name"
        elif column == "source":
            expected[r["event_id"]] = "source_mismatch"
        elif column in contract.ID_COLUMNS and kind in ("nul", "long"):
            expected[r["event_id"]] = "malformed_id"
        elif column == "properties" and kind == "nul":
            expected[r["event_id"]] = "bad_properties"
    # Rows with a strange event_id are keyed by it: compare by position instead.
    by_row = {r["event_id"]: reasons.get(r["event_id"]) for r in rows}
    assert {k: v for k, v in by_row.items() if v} == expected
    lines = checks.quarantine_lines(result.quarantined)
    decoded = [json.loads(line) for line in lines]
    quarantined_rows = {r["event_id"]: r for r in rows if r["event_id"] in expected}
    for line in decoded:
        original = quarantined_rows[line["event_id"]]
        for column in STRING_COLUMNS:
            assert line[column] == original[column]
        assert line[checks.ERROR_DETAIL]


# ---------------------------------------------------------------------------- properties

NAMES = st.sampled_from(list(contract.EVENT_NAMES) + list(contract.LEGACY_ALIASES)
                        + ["", "ARTICLE_VIEW", "🥕"])
TEXT = st.one_of(st.none(), st.text(max_size=20), st.sampled_from(list(STRANGE.values())),
                 st.sampled_from(["u1", "a1", "r1", "{}", '{"a": [1, 2]}', "[", "NaN", "1e999"]))
STAMPS_US = st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX),
                      st.integers(DAY.start_us - 10, DAY.end_us + 10))
PRICES = st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX))


@st.composite
def contract_rows(draw, max_rows=12):
    n = draw(st.integers(0, max_rows))
    rows = []
    for i in range(n):
        rows.append({
            "event_id": draw(st.one_of(TEXT, st.just(f"e{i % 3}"))),
            "event_timestamp": draw(STAMPS_US),
            "event_name": draw(st.one_of(st.none(), NAMES, st.text(max_size=8))),
            "source": draw(st.one_of(st.none(), st.sampled_from(contract.SOURCES), st.text(max_size=4))),
            "user_id": draw(TEXT), "article_id": draw(TEXT), "region_id": draw(TEXT),
            "category_id": draw(TEXT), "price": draw(PRICES), "platform": draw(TEXT),
            "properties": draw(TEXT)})
    return rows


def arrow_of(rows):
    columns = {name: [r[name] for r in rows] for name in contract.COLUMN_NAMES}
    stamps = pa.array(columns.pop("event_timestamp"), pa.int64()).cast(pa.timestamp("us", "UTC"))
    arrays = [stamps if f.name == "event_timestamp" else pa.array(columns[f.name], f.type)
              for f in contract.arrow_schema()]
    return pa.RecordBatch.from_arrays(arrays, schema=contract.arrow_schema())


def assert_every_row_has_an_outcome(batch, result):
    assert result.valid.num_rows + result.quarantined.num_rows + result.out_of_span == \
        batch.num_rows
    reasons = result.quarantined.column(checks.ERROR_REASON).to_pylist()
    assert all(reason in contract.REASONS for reason in reasons)
    assert result.quarantined.column(checks.ERROR_DETAIL).null_count == 0
    lines = checks.quarantine_lines(result.quarantined)
    assert [json.loads(line)[checks.ERROR_REASON] for line in lines] == reasons
    valid_stamps = result.valid.column("event_timestamp").cast(pa.int64()).to_pylist()
    assert all(DAY.start_us <= s < DAY.end_us for s in valid_stamps)


@pytest.mark.functions
@settings(max_examples=50, deadline=None)
@given(contract_rows())
def test_check_rows_never_raises_and_gives_every_row_an_outcome(rows):
    batch = arrow_of(rows)
    assert_every_row_has_an_outcome(batch, checks.check_rows(batch, DAY.start_us, DAY.end_us))


DATETIMES = st.one_of(
    st.none(), st.datetimes(),
    st.datetimes(timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=14)),
                                            dt.timezone(dt.timedelta(hours=-12, minutes=-30))])),
    st.datetimes(min_value=dt.datetime(2026, 11, 25, 23), max_value=dt.datetime(2026, 11, 27, 1)),
    st.text(max_size=30), st.integers(), st.floats())


@pytest.mark.functions
@settings(max_examples=50, deadline=None)
@given(contract_rows(), st.lists(DATETIMES, min_size=12, max_size=12),
       st.lists(st.sampled_from(contract.COLUMN_NAMES), max_size=3))
def test_rows_to_batch_never_raises_and_checks_account_for_every_row(rows, stamps, dropped):
    dicts = []
    for i, r in enumerate(rows):
        r = dict(r, event_timestamp=stamps[i])
        for name in dropped:   # a field BigQuery did not return
            r.pop(name, None)
        dicts.append(r)
    batch = read.rows_to_batch(dicts)
    assert batch.schema == contract.arrow_schema() and batch.num_rows == len(rows)
    assert_every_row_has_an_outcome(batch, checks.check_rows(batch, DAY.start_us, DAY.end_us))


TIMESTAMP_TYPES = st.sampled_from([pa.timestamp(u, tz) for u in ("s", "ms", "us", "ns")
                                   for tz in (None, "UTC", "Asia/Seoul")])


@pytest.mark.functions
@settings(max_examples=50, deadline=None)
@given(contract_rows(), TIMESTAMP_TYPES,
       st.lists(st.sampled_from(contract.COLUMN_NAMES), max_size=3, unique=True),
       st.booleans())
def test_conform_never_raises_on_contract_like_files(rows, stamp_type, dropped, extra):
    batch = arrow_of(rows)
    table = pa.Table.from_batches([batch])
    stamps = batch.column("event_timestamp").cast(pa.int64()).cast(stamp_type)
    table = table.set_column(1, "event_timestamp", stamps)
    table = table.drop(dropped)
    if extra:
        table = table.append_column("experiment", pa.array(["x"] * len(rows), pa.string()))
    conformed, missing = read.conform(table, "f.parquet")
    assert missing == [n for n in contract.COLUMN_NAMES if n in dropped]
    assert conformed.schema == contract.arrow_schema() and conformed.num_rows == len(rows)
    assert read.new_columns(table.schema) == ([("experiment", "string")] if extra else [])
    assert_every_row_has_an_outcome(conformed,
                                    checks.check_rows(conformed, DAY.start_us, DAY.end_us))
