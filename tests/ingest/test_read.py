"""Tier 1: the reader's plain functions: table names, the BigQuery row restriction,
the export layout's partitions, conforming batches to the contract, DIRECT_READ rows.

The restriction test runs the restriction itself: it translates it from
BigQuery SQL to DuckDB with sqlglot and executes it over a generated export
layout, and checks it selects exactly the rows of the partitions that
partition_dirs() names for the same span.
"""

import datetime as dt
import random

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from apache_beam.io.gcp import bigquery_tools

from schemas import contract
from transforms.common.span import day_span
from transforms.ingest import read

pytestmark = pytest.mark.functions

UTC = dt.timezone.utc
SEOUL_DAY = day_span(dt.date(2026, 11, 26), "Asia/Seoul")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- parse_bigquery_table

@pytest.mark.parametrize("events, expected", [
    ("bq://my-project.ds.table", ("my-project", "ds", "table")),
    ("bq://my-project.analytics_2026.events-v2", ("my-project", "analytics_2026", "events-v2")),
    ("bq://example.com:my-project.ds.table", ("example.com:my-project", "ds", "table")),
    ("bq://a12345.D_S.T_1", ("a12345", "D_S", "T_1")),
])
def test_parse_bigquery_table_accepts(events, expected):
    table = read.parse_bigquery_table(events)
    assert tuple(table) == expected
    assert table.spec == f"{expected[0]}:{expected[1]}.{expected[2]}"
    # Beam reads the spec back to the same three parts.
    ref = bigquery_tools.parse_table_reference(table.spec)
    assert (ref.projectId, ref.datasetId, ref.tableId) == expected


@pytest.mark.parametrize("events", [
    "", "bq://", "my-project.ds.table", "bigquery://my-project.ds.table", "bq:/my-project.ds.table",
    "bq://my-project.ds", "bq://my-project", "bq://.ds.table", "bq://my-project..table",
    "bq://my-project.ds.", "bq://my-project.ds.table.extra",
    "bq://my-project.ds.table'", "bq://my-project.ds.ta'ble", 'bq://my-project.ds."table"',
    "bq://my-project.ds.table`", "bq://my-project.ds.table; DROP TABLE x",
    "bq://my-project.ds.table;", "bq://my-project.ds.tab le", "bq://my project.ds.table",
    " bq://my-project.ds.table", "bq://my-project.ds.table ", "bq://my-project.d s.table",
    "bq://my-project.ds.table/*x*/", "bq://My-Project.ds.table",
    "bq://1project.ds.table", "bq://proj.ds.table", "bq://my-project-.ds.table",
    "bq://my-project.ds.table\r", "bq://my-project.ds.t\nable", "bq://my-project.ds.table OR 1=1",
    "bq://my-project.ds.table\t", "bq://ex ample.com:my-project.ds.table",
])
def test_parse_bigquery_table_rejects(events):
    with pytest.raises(ValueError, match="--events="):
        read.parse_bigquery_table(events)


def test_parse_bigquery_table_rejects_a_trailing_newline():
    # BUG: `$` in _BQ_TABLE_RE also matches before a final "\n", so this option text
    # is accepted (as my-project:ds.table). Fix: re.fullmatch, or end the pattern with \Z.
    with pytest.raises(ValueError, match="--events="):
        read.parse_bigquery_table("bq://my-project.ds.table\n")


# ---------------------------------------------------------------- row_restriction

def test_row_restriction_for_a_seoul_day():
    assert read.row_restriction(SEOUL_DAY) == (
        "event_timestamp >= TIMESTAMP '2026-11-25 00:00:00+00' AND "
        "event_timestamp < TIMESTAMP '2026-11-27 00:00:00+00'")


@pytest.mark.parametrize("run_date, timezone, first, after", [
    (dt.date(2026, 11, 26), "UTC", "2026-11-26", "2026-11-27"),
    (dt.date(2026, 3, 8), "America/New_York", "2026-03-08", "2026-03-10"),
    (dt.date(2026, 11, 1), "America/New_York", "2026-11-01", "2026-11-03"),
    (dt.date(2026, 12, 31), "Asia/Seoul", "2026-12-30", "2027-01-01"),
])
def test_row_restriction_covers_the_overlapping_utc_dates(run_date, timezone, first, after):
    assert read.row_restriction(day_span(run_date, timezone), column="ts") == (
        f"ts >= TIMESTAMP '{first} 00:00:00+00' AND ts < TIMESTAMP '{after} 00:00:00+00'")


def test_bigquery_read_kwargs():
    table = read.parse_bigquery_table("bq://my-project.ds.events")
    assert read.bigquery_read_kwargs(table, SEOUL_DAY) == {
        "method": beam.io.ReadFromBigQuery.Method.DIRECT_READ,
        "table": "my-project:ds.events",
        "selected_fields": list(contract.COLUMN_NAMES),
        "row_restriction": read.row_restriction(SEOUL_DAY),
        "use_native_datetime": True,
    }
    assert read.bigquery_read_kwargs(table, SEOUL_DAY)["method"] == "DIRECT_READ"


# ---------------------------------------------------------------- partition_dirs / listing

def test_partition_dirs():
    assert read.partition_dirs("gs://bucket/events/", SEOUL_DAY) == [
        "gs://bucket/events/dt=2026-11-25", "gs://bucket/events/dt=2026-11-26"]
    assert read.partition_dirs("/data/events", day_span(dt.date(2026, 11, 26), "UTC")) == [
        "/data/events/dt=2026-11-26"]
    assert read.partition_dirs("/data/events", day_span(dt.date(2026, 11, 1),
                                                        "America/New_York")) == [
        "/data/events/dt=2026-11-01", "/data/events/dt=2026-11-02"]


def test_list_parquet_files(tmp_path):
    part = tmp_path / "dt=2026-11-26"
    part.mkdir()
    table = pa.table({"x": [1]})
    for name in ["part-2.parquet", "part-0.parquet", "part-10.parquet"]:
        pq.write_table(table, part / name)
    (part / "_SUCCESS").write_text("")
    (part / "notes.txt").write_text("x")
    assert read.list_parquet_files(str(part)) == [
        f"{part}/part-0.parquet", f"{part}/part-10.parquet", f"{part}/part-2.parquet"]
    assert read.list_parquet_files(str(tmp_path / "dt=2026-11-27")) == []



def test_validated_files_come_from_the_manifest(tmp_path):
    from transforms.publishing.protocol import publish_day
    from transforms.publishing.writers import write_piece
    day = str(tmp_path / "validated" / "dt=2026-11-26")
    with pytest.raises(FileNotFoundError, match=f"^{day} has no _SUCCESS"):
        read.validated_files(day)
    table = pa.table({"x": list(range(10))})
    records = []
    for shard in (3, 0):
        records += write_piece(day, "R1", "parquet", "part", shard, table, 1 << 20)
    publish_day(day, "R1", records, {}, file_sets=("part",))
    # A stray Parquet file (another run's, not listed) is not read.
    pq.write_table(table, f"{day}/part-R0-00000-000.parquet")
    assert read.validated_files(day) == [f"{day}/part-R1-00000-000.parquet",
                                         f"{day}/part-R1-00003-000.parquet"]


# ---------------------------------------------------------------- conform

def contract_rows():
    return [
        {"event_id": "e1", "event_timestamp": utc(2026, 11, 26, 3, 4, 5, 123456),
         "event_name": "article_view", "source": "client", "user_id": "u1", "article_id": "a1",
         "region_id": "r1", "category_id": "c1", "price": 1000, "platform": "ios",
         "properties": '{"rank": 3}'},
        {"event_id": "e2", "event_timestamp": utc(2026, 11, 25, 15, 0, 0),
         "event_name": "article_sold", "source": "server", "user_id": None, "article_id": "a2",
         "region_id": None, "category_id": None, "price": None, "platform": "server",
         "properties": None},
    ]


def expected_batch(rows=None):
    return pa.RecordBatch.from_pylist(rows or contract_rows(), schema=contract.arrow_schema())


def export_like(timestamp_type=pa.timestamp("ns", tz="UTC"), price_type=pa.int32(), drop=(),
                rows=None):
    """The contract rows as another writer might store them: columns shuffled, an
    extra column, other timestamp and integer types."""
    rows = rows or contract_rows()
    columns = {
        "properties": pa.array([r["properties"] for r in rows], pa.string()),
        "extra_column": pa.array([1.5, 2.5]),
        "price": pa.array([r["price"] for r in rows], price_type),
        "article_id": pa.array([r["article_id"] for r in rows], pa.string()),
        "event_timestamp": pa.array([r["event_timestamp"] for r in rows],
                                    pa.timestamp("us", tz="UTC")).cast(timestamp_type),
    }
    for name in contract.COLUMN_NAMES:
        if name not in columns:
            columns[name] = pa.array([r[name] for r in rows], pa.string())
    for name in drop:
        del columns[name]
    return pa.table(columns)


@pytest.mark.parametrize("timestamp_type", [
    pa.timestamp("us", tz="UTC"), pa.timestamp("ns", tz="UTC"), pa.timestamp("ms", tz="UTC"),
    pa.timestamp("us"), pa.timestamp("ns"), pa.timestamp("us", tz="Asia/Seoul"),
    pa.timestamp("us", tz="+09:00"),
])
def test_conform_casts_to_the_contract_schema(timestamp_type):
    rows = contract_rows()
    if timestamp_type.unit == "ms":
        rows[0]["event_timestamp"] = utc(2026, 11, 26, 3, 4, 5, 123000)
    expected = expected_batch(rows)
    table = export_like(timestamp_type, rows=rows)
    for given in (table, table.to_batches()[0]):
        batch, missing = read.conform(given, "gs://b/events/dt=2026-11-26/part-0.parquet")
        assert missing == []
        assert isinstance(batch, pa.RecordBatch)
        assert batch.schema == contract.arrow_schema()
        assert batch.equals(expected)


def test_conform_accepts_other_integer_and_string_encodings():
    table = export_like(price_type=pa.uint16())
    table = table.set_column(table.schema.get_field_index("event_name"), "event_name",
                             pa.array(["article_view", "article_sold"]).dictionary_encode())
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id",
                             pa.array(["u1", None], pa.large_string()))
    batch, missing = read.conform(table, "f.parquet")
    assert missing == [] and batch.equals(expected_batch())


def test_conform_of_a_chunked_table():
    table = pa.concat_tables([export_like().slice(0, 1), export_like().slice(1, 1)])
    assert table.column("event_id").num_chunks == 2
    batch, missing = read.conform(table, "f.parquet")
    assert missing == [] and batch.equals(expected_batch())


def test_conform_fills_missing_columns_with_nulls_and_names_them():
    table = export_like(drop=("platform", "region_id", "properties"))
    batch, missing = read.conform(table, "f.parquet")
    assert missing == ["region_id", "platform", "properties"]   # contract order
    rows = contract_rows()
    for r in rows:
        r.update(platform=None, region_id=None, properties=None)
    assert batch.schema == contract.arrow_schema()
    assert batch.equals(expected_batch(rows))


def test_conform_of_an_empty_file_without_columns():
    batch, missing = read.conform(pa.table({"other": pa.array([], pa.int64())}), "f.parquet")
    assert missing == list(contract.COLUMN_NAMES)
    assert batch.num_rows == 0 and batch.schema == contract.arrow_schema()


@pytest.mark.parametrize("column, values", [
    ("price", pa.array(["cheap", "1000"])),
    ("price", pa.array([12.5, 3.0])),
    ("event_timestamp", pa.array([[1], [2]])),
    ("event_id", pa.array([b"\xff\xfe", b"ok"], pa.binary())),
    ("price", pa.array([2 ** 63, 1], pa.uint64())),
])
def test_conform_fails_naming_the_file_and_column(column, values):
    table = export_like()
    table = table.set_column(table.schema.get_field_index(column), column, values)
    origin = "gs://bucket/events/dt=2026-11-26/part-7.parquet"
    with pytest.raises(ValueError) as err:
        read.conform(table, origin)
    assert str(err.value).startswith(f"{origin}: column {column} has type ")
    assert f"convert to the contract's {contract.arrow_schema().field(column).type}" in \
        str(err.value)


# ---------------------------------------------------------------- rows_to_batch

def test_rows_to_batch_with_datetimes_and_iso_strings():
    expected_time = utc(2026, 11, 26, 3, 4, 5, 123456)
    stamps = [
        expected_time,
        expected_time.replace(tzinfo=None),                          # naive: UTC
        expected_time.astimezone(dt.timezone(dt.timedelta(hours=9))),
        "2026-11-26T03:04:05.123456Z",
        "2026-11-26 03:04:05.123456 UTC",
        "2026-11-26T03:04:05.123456+00:00",
        "2026-11-26T12:04:05.123456+09:00",
        "2026-11-26 03:04:05.123456",
    ]
    rows = [{"event_id": f"e{i}", "event_timestamp": s, "event_name": "article_view",
             "source": "client", "price": 7} for i, s in enumerate(stamps)]
    rows.append({"event_id": "e-null", "event_timestamp": None})
    batch = read.rows_to_batch(rows)
    assert batch.schema == contract.arrow_schema()
    assert batch.column("event_timestamp").to_pylist() == [expected_time] * len(stamps) + [None]
    assert batch.column("event_id").to_pylist() == [f"e{i}" for i in range(len(stamps))] + [
        "e-null"]
    assert batch.column("price").to_pylist() == [7] * len(stamps) + [None]
    assert batch.column("user_id").to_pylist() == [None] * (len(stamps) + 1)


def test_rows_to_batch_full_rows():
    assert read.rows_to_batch(contract_rows()).equals(expected_batch())
    assert read.rows_to_batch([]).num_rows == 0


# ---------------------------------------------------------------- contract_mismatches

def test_contract_mismatches():
    fields = [(n, t, m) for n, t, m in contract.COLUMNS]
    assert read.contract_mismatches(fields) == []
    legacy = [(n, {"INT64": "INTEGER"}.get(t, t), None if m == "NULLABLE" else m)
              for n, t, m in contract.COLUMNS] + [("extra", "FLOAT", "NULLABLE")]
    assert read.contract_mismatches(legacy) == []
    changed = [f for f in fields if f[0] != "platform"]
    changed = [("price", "FLOAT", "NULLABLE") if f[0] == "price" else f for f in changed]
    changed = [("region_id", "STRING", "REPEATED") if f[0] == "region_id" else f for f in changed]
    assert read.contract_mismatches(changed) == [
        "column region_id is REPEATED, the contract says NULLABLE",
        "column price is FLOAT64, the contract says INT64",
        "column platform is missing",
    ]


# ---------------------------------------------------------------- the restriction, executed

def write_export(root, dates, rng: random.Random):
    """A few hundred rows over `dates` (UTC) in the export layout, with rows at
    exactly midnight and one microsecond before it. Returns {event_id: timestamp}."""
    stamps = {}
    serial = 0
    for date in dates:
        midnight = dt.datetime.combine(date, dt.time(0), tzinfo=UTC)
        day = [midnight, midnight + dt.timedelta(days=1, microseconds=-1),
               midnight + dt.timedelta(microseconds=1), midnight + dt.timedelta(hours=12)]
        # Every local midnight of the zones under test, as UTC instants on this date.
        day += [midnight + dt.timedelta(hours=h) for h in (4, 5, 15)]
        day += [midnight + dt.timedelta(microseconds=rng.randrange(86_400_000_000))
                for _ in range(rng.randrange(60, 120))]
        for part, chunk in enumerate((day[::2], day[1::2])):
            ids = []
            for _ in chunk:
                serial += 1
                ids.append(f"ev{serial:05d}")
            stamps.update(zip(ids, chunk))
            directory = root / f"dt={date.isoformat()}"
            directory.mkdir(exist_ok=True)
            pq.write_table(pa.table({
                "event_id": pa.array(ids, pa.string()),
                "event_timestamp": pa.array(chunk, pa.timestamp("us", tz="UTC")),
                "event_name": pa.array(["article_view"] * len(ids), pa.string()),
            }), directory / f"part-{part}.parquet")
    return stamps


def duckdb_select(root, restriction: str):
    where = sqlglot.transpile(restriction, read="bigquery", write="duckdb")[0]
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone='UTC'")
        sql = f"SELECT event_id FROM read_parquet('{root}/dt=*/*.parquet') WHERE {where}"
        return sorted(r[0] for r in con.execute(sql).fetchall())
    finally:
        con.close()


def partition_rows(root, span):
    ids = []
    for directory in read.partition_dirs(str(root), span):
        for path in read.list_parquet_files(directory):
            ids += pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    return sorted(ids)


@pytest.mark.parametrize("span, dates", [
    (SEOUL_DAY, [dt.date(2026, 11, d) for d in (24, 25, 26, 27)]),
    (day_span(dt.date(2026, 3, 8), "America/New_York"),
     [dt.date(2026, 3, d) for d in (7, 8, 9, 10)]),
    (day_span(dt.date(2026, 11, 1), "America/New_York"),
     [dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)]),
])
def test_row_restriction_selects_exactly_the_partition_files(tmp_path, span, dates):
    stamps = write_export(tmp_path, dates, random.Random(str(span.run_date)))
    assert 250 <= len(stamps) <= 600
    selected = duckdb_select(tmp_path, read.row_restriction(span))
    assert selected == partition_rows(tmp_path, span)
    # Those are the rows of the UTC dates the span overlaps, and they hold every
    # row of the span itself.
    wanted = set(span.utc_dates())
    assert selected == sorted(e for e, t in stamps.items() if t.date() in wanted)
    in_span = {e for e, t in stamps.items() if span.start <= t < span.end}
    assert in_span < set(selected) < set(stamps)
    # The midnight boundaries: the first dates' midnight row is in, the next date's is out.
    first, after = min(wanted), max(wanted) + dt.timedelta(days=1)
    by_time = {t: e for e, t in stamps.items()}
    assert by_time[dt.datetime.combine(first, dt.time(0), tzinfo=UTC)] in selected
    assert by_time[dt.datetime.combine(after, dt.time(0), tzinfo=UTC)] not in selected
    last_us = dt.datetime.combine(after, dt.time(0), tzinfo=UTC) - dt.timedelta(microseconds=1)
    assert by_time[last_us] in selected
    assert by_time[span.start] in selected and by_time[span.end] in selected


def test_transpiled_restriction_text():
    where = sqlglot.transpile(read.row_restriction(SEOUL_DAY), read="bigquery",
                              write="duckdb")[0]
    assert where == ("event_timestamp >= CAST('2026-11-25 00:00:00+00' AS TIMESTAMPTZ) AND "
                     "event_timestamp < CAST('2026-11-27 00:00:00+00' AS TIMESTAMPTZ)")


def test_an_unreadable_export_file_fails_naming_the_file(tmp_path):
    """A corrupt Parquet file is an error naming it, never a silently skipped file."""
    from transforms.ingest.read import ReadParquetFile
    bad = tmp_path / "dt=2026-11-26" / "part-00001.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(IOError, match=r"cannot read events file .*part-00001\.parquet"):
        list(ReadParquetFile().process(str(bad)))


def test_read_parquet_file_yields_contract_batches_and_reports_missing_columns(tmp_path):
    import pyarrow.parquet as pq
    from transforms.ingest.read import MISSING_COLUMNS, ReadParquetFile
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"event_id": ["e1", "e2"], "source": ["client", None]}), path)
    out = list(ReadParquetFile().process(str(path)))
    tagged = [o for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    batches = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert [(t.tag, t.value) for t in tagged] == [
        (MISSING_COLUMNS, (str(path), tuple(n for n in contract.COLUMN_NAMES
                                            if n not in ("event_id", "source"))))]
    assert len(batches) == 1 and batches[0].schema == contract.arrow_schema()
    assert batches[0].column(0).to_pylist() == ["e1", "e2"]
    assert batches[0].column(3).to_pylist() == ["client", None]


def test_read_parquet_table_filters_event_names_while_reading(tmp_path):
    from transforms.ingest.read import read_parquet_table
    rows = {name: [None] * 4 for name in contract.COLUMN_NAMES}
    rows.update(event_id=["a", "b", "c", "d"],
                event_name=["article_view", "impression", "chat_start", "search"])
    path = tmp_path / "part-00000-of-00001.parquet"
    pq.write_table(pa.table(rows, schema=contract.arrow_schema()), path)
    table = read_parquet_table(str(path), ["event_id", "event_name"],
                               ["article_view", "chat_start"])
    assert table.to_pydict() == {"event_id": ["a", "c"],
                                 "event_name": ["article_view", "chat_start"]}
    assert read_parquet_table(str(path)).num_rows == 4


def test_a_downstream_refusal_names_the_days_reasons(tmp_path):
    """A job reading --validated_events of an unblessed day says why it was refused (the
    summary's `reasons`)."""
    import json
    from transforms.ingest.day_files import DayNotBlessedError, blessed_summary
    folder = tmp_path / "validation" / "dt=2026-11-26"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(
        {"run_date": "2026-11-26", "blessed": False, "reasons": ["anomalies", "quarantine"]}))
    with pytest.raises(DayNotBlessedError, match=(
            rf"^day 2026-11-26 under {tmp_path} is not blessed \(summary.json: blessed=False, "
            r"reasons: anomalies, quarantine\); refusing to build from it$")):
        blessed_summary(str(tmp_path / "validated"), "2026-11-26")
    (folder / "summary.json").write_text(json.dumps({"run_date": "2026-11-26", "blessed": True,
                                                     "reasons": []}))
    assert blessed_summary(str(tmp_path / "validated"), "2026-11-26")["blessed"] is True
