"""Reading one day of events: BigQuery (Storage Read API) or the table's Parquet
export layout (local or gs://), as Arrow record batches with the contract schema.

Nothing here calls a cloud API while the pipeline is built: a Flex Template
launcher and an offline dry run both build it. Listing files and checking the
BigQuery table's schema are pipeline steps.
"""

import datetime as dt
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import contract
from transforms.common.errors import Refusal
from transforms.common.span import DaySpan
from transforms.ingest.day_files import blessed_summary
from transforms.publishing.readers import published_files

READ_BATCH_ROWS = 131072
MISSING_COLUMNS = "missing_columns"   # tag of the side output naming absent columns
NEW_COLUMNS = "new_columns"           # tag of the side output naming non-contract columns

_INT64_MIN, _INT64_MAX = -2 ** 63, 2 ** 63 - 1
_MICROS_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}


class MissingPartitionsError(Refusal):
    """UTC partitions the run's span needs hold no data."""

# bq://project.dataset.table; project ids may be domain-scoped (example.com:project).
_BQ_TABLE_RE = re.compile(
    r"^bq://(?P<project>(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9])"
    r"\.(?P<dataset>[A-Za-z0-9_]{1,1024})\.(?P<table>[A-Za-z0-9_-]{1,1024})$")


class BigQueryTable(NamedTuple):
    project: str
    dataset: str
    table: str

    @property
    def spec(self) -> str:
        return f"{self.project}:{self.dataset}.{self.table}"


def parse_bigquery_table(events: str) -> BigQueryTable:
    match = _BQ_TABLE_RE.fullmatch(events)
    if not match:
        raise ValueError(
            f"--events={events!r} is not a BigQuery table of the form "
            "bq://project.dataset.table (letters, digits, '_' and '-' only)")
    return BigQueryTable(match["project"], match["dataset"], match["table"])


def row_restriction(span: DaySpan, column: str = contract.PARTITION_COLUMN) -> str:
    """Storage Read API filter selecting exactly the UTC partitions overlapping the span.

    Built from parsed dates only (never from option text), so BigQuery prunes
    the table's DATE(event_timestamp) partitions."""
    dates = span.utc_dates()
    first: dt.date = dates[0]
    after: dt.date = dates[-1] + dt.timedelta(days=1)
    return (f"{column} >= TIMESTAMP '{first.isoformat()} 00:00:00+00' "
            f"AND {column} < TIMESTAMP '{after.isoformat()} 00:00:00+00'")


def partition_dirs(events_dir: str, span: DaySpan) -> List[str]:
    """The export layout's partition directories that the span overlaps."""
    root = events_dir.rstrip("/")
    return [f"{root}/dt={d.isoformat()}" for d in span.utc_dates()]


def utc_microseconds(column: pa.Array) -> pa.Array:
    """A timestamp column of any unit, with or without a time zone, as the contract's
    timestamp[us, tz=UTC]. A value without a zone is UTC wall time. Nanoseconds are
    floored to the microsecond; a value whose microseconds overflow int64 saturates to
    int64's min or max (far outside any span, so counted out of span, never lost or
    wrapped around)."""
    unit = column.type.unit
    raw = column.cast(pa.int64())  # the stored number: UTC epoch, or UTC wall time if naive
    valid = pc.is_valid(raw).to_numpy(zero_copy_only=False)
    values = raw.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if unit == "ns":
        micros = np.floor_divide(values, 1000)
    else:
        factor = _MICROS_PER[unit]
        micros = values * factor
        if factor > 1:
            micros[values > _INT64_MAX // factor] = _INT64_MAX
            micros[values < _INT64_MIN // factor] = _INT64_MIN
    return pa.array(micros, pa.int64(), mask=~valid).cast(contract.arrow_schema().field(
        contract.PARTITION_COLUMN).type)


def new_columns(schema: pa.Schema) -> List[Tuple[str, str]]:
    """(name, Arrow type) of the columns of `schema` that the contract does not have."""
    known = set(contract.COLUMN_NAMES)
    return [(field.name, str(field.type)) for field in schema if field.name not in known]


def conform(table, origin: str) -> Tuple[pa.RecordBatch, List[str]]:
    """Cast a batch read from `origin` to the contract schema.

    Columns absent from the input become nulls and are returned by name (the
    validation gate reports them); a column that cannot be cast fails the job
    naming the file and the column."""
    arrays, missing = [], []
    names = set(table.schema.names)
    n = table.num_rows
    for field in contract.arrow_schema():
        if field.name not in names:
            missing.append(field.name)
            arrays.append(pa.nulls(n, field.type))
            continue
        column = table.column(field.name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if column.type != field.type:
            try:
                if pa.types.is_timestamp(field.type) and pa.types.is_timestamp(column.type):
                    column = utc_microseconds(column)
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise ValueError(
                    f"{origin}: column {field.name} has type {column.type}, which does not "
                    f"convert to the contract's {field.type}: {err}") from err
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=contract.arrow_schema()), missing


def list_parquet_files(partition_dir: str) -> List[str]:
    """Parquet files of one partition directory of the events export layout, sorted;
    none when the day has no data. (Published folders are read by their manifest:
    validated_files.)"""
    pattern = f"{partition_dir}/*.parquet"
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def partition_files(partition: Tuple[str, str]) -> Tuple[str, List[str]]:
    """(UTC date, partition directory) -> (date, its Parquet files): none when the
    directory is absent or holds no Parquet file."""
    date, directory = partition
    return date, list_parquet_files(directory)


def missing_partitions(needed: Sequence[str], rows_by_date: Dict[str, int]) -> List[str]:
    """The needed UTC dates (YYYY-MM-DD) with no rows or files, sorted."""
    return sorted(d for d in needed if not rows_by_date.get(d))


def require_partitions(rows_by_date: Dict[str, int], needed: Sequence[str], events: str,
                       allow_missing: bool, what: str) -> Dict:
    """Pipeline step: the reader's tally of missing partitions. Fails naming every
    missing partition unless `allow_missing`."""
    missing = missing_partitions(needed, rows_by_date)
    if missing and not allow_missing:
        raise MissingPartitionsError(
            f"{len(missing)} of the {len(needed)} UTC partition(s) the run needs "
            f"({', '.join('dt=' + d for d in needed)}) {what} in {events}: "
            f"{', '.join('dt=' + d for d in missing)}. Rerun when the data has landed, or "
            "pass --allow_missing_partitions to read what exists (summary.json then lists "
            "them as missing_partitions)")
    return {"missing_partitions": missing, "new_columns": []}


def new_columns_tally(found: Iterable[Tuple[str, Sequence[Tuple[str, str]]]]) -> Dict:
    """(file or table, ((column, type), ...)) records -> the reader's tally of new columns."""
    columns = sorted({(name, type_) for _, pairs in found for name, type_ in pairs})
    return {"missing_partitions": [],
            "new_columns": [{"column": name, "type": type_} for name, type_ in columns]}


def rows_by_utc_date(batch: pa.RecordBatch) -> Dict[str, int]:
    """Rows per UTC date (YYYY-MM-DD) of event_timestamp; null timestamps are not counted."""
    stamps = batch.column(contract.PARTITION_COLUMN).cast(pa.int64()).drop_null()
    if len(stamps) == 0:
        return {}
    days = np.floor_divide(stamps.to_numpy(zero_copy_only=False), 86_400_000_000)
    values, counts = np.unique(days, return_counts=True)
    epoch = dt.date(1970, 1, 1)
    out = {}
    for day, count in zip(values.tolist(), counts.tolist()):
        try:
            out[(epoch + dt.timedelta(days=day)).isoformat()] = count
        except OverflowError:  # beyond year 9999: no partition of a span is there
            continue
    return out


class SumDateCounts(beam.CombineFn):
    """Global sum of {date: rows} dicts (O(dates) state)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counts):
        for date, count in counts.items():
            accumulator[date] = accumulator.get(date, 0) + count
        return accumulator

    def merge_accumulators(self, accumulators):
        total = {}
        for accumulator in accumulators:
            self.add_input(total, accumulator)
        return total

    def extract_output(self, accumulator):
        return accumulator


class ReadParquetFile(beam.DoFn):
    """One export file -> contract record batches; absent columns to MISSING_COLUMNS,
    columns the contract lacks to NEW_COLUMNS."""

    def __init__(self):
        self.rows_read = Metrics.counter("events", "rows_read")

    def process(self, path: str):
        try:
            handle = FileSystems.open(path, compression_type="uncompressed")
            parquet = pq.ParquetFile(handle)
            extra = new_columns(parquet.schema_arrow)
            if extra:
                yield beam.pvalue.TaggedOutput(NEW_COLUMNS, (path, tuple(extra)))
            batches = parquet.iter_batches(batch_size=READ_BATCH_ROWS)
            first = True
            for raw in batches:
                batch, missing = conform(raw, path)
                if first and missing:
                    yield beam.pvalue.TaggedOutput(MISSING_COLUMNS, (path, tuple(missing)))
                first = False
                self.rows_read.inc(batch.num_rows)
                yield batch
            if first and parquet.metadata.num_rows == 0:
                _, missing = conform(parquet.schema_arrow.empty_table(), path)
                if missing:
                    yield beam.pvalue.TaggedOutput(MISSING_COLUMNS, (path, tuple(missing)))
        except (OSError, pa.ArrowException) as err:
            raise IOError(f"cannot read events file {path}: {err}") from err


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


def timestamp_micros(value) -> Optional[int]:
    """A BigQuery TIMESTAMP value (datetime, naive meaning UTC, or ISO-8601 text) as UTC
    microseconds since the epoch; None when it is null or not a timestamp (the row is
    then quarantined as bad_timestamp)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(
                value.strip().replace("Z", "+00:00").replace(" UTC", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    # Exact integer arithmetic: no overflow at year 1 or 9999 with any offset.
    return (value - _EPOCH) // _MICROSECOND


def rows_to_batch(rows: Sequence[Dict]) -> pa.RecordBatch:
    """BigQuery DIRECT_READ rows (dicts) -> one contract record batch."""
    columns = {name: [row.get(name) for row in rows] for name in contract.COLUMN_NAMES}
    schema = contract.arrow_schema()
    arrays = []
    for field in schema:
        if field.name == contract.PARTITION_COLUMN:
            micros = [timestamp_micros(value) for value in columns[field.name]]
            arrays.append(pa.array(micros, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(columns[field.name], field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def contract_mismatches(fields: Iterable[Tuple[str, str, str]]) -> List[str]:
    """Differences between a table's (name, type, mode) fields and the contract."""
    aliases = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
    actual = {name: (aliases.get(t, t), mode or "NULLABLE") for name, t, mode in fields}
    problems = []
    for name, bq_type, mode in contract.COLUMNS:
        if name not in actual:
            problems.append(f"column {name} is missing")
            continue
        got_type, got_mode = actual[name]
        if got_type != bq_type:
            problems.append(f"column {name} is {got_type}, the contract says {bq_type}")
        if got_mode != mode:
            problems.append(f"column {name} is {got_mode}, the contract says {mode}")
    return problems


def bigquery_new_columns(fields: Iterable[Tuple[str, str, str]]) -> List[Tuple[str, str]]:
    """(name, BigQuery type) of a table's fields that the contract does not have."""
    known = set(contract.COLUMN_NAMES)
    return [(name, bq_type) for name, bq_type, _ in fields if name not in known]


def check_bigquery_schema(table: BigQueryTable) -> List[Tuple[str, str]]:
    """Pipeline step: compare the live table's schema with the contract; returns the
    table's columns that the contract lacks, (name, type)."""
    from google.cloud import bigquery
    client = bigquery.Client(project=table.project)
    live = client.get_table(f"{table.project}.{table.dataset}.{table.table}")
    problems = contract_mismatches((f.name, f.field_type, f.mode) for f in live.schema)
    if problems:
        raise ValueError(f"BigQuery table {table.spec} does not match schemas/events_table.json: "
                         + "; ".join(problems))
    return bigquery_new_columns((f.name, f.field_type, f.mode) for f in live.schema)


def bigquery_read_kwargs(table: BigQueryTable, span: DaySpan) -> Dict:
    return dict(
        method=beam.io.ReadFromBigQuery.Method.DIRECT_READ,
        table=table.spec,
        selected_fields=list(contract.COLUMN_NAMES),
        row_restriction=row_restriction(span),
        use_native_datetime=True,
    )


class ReadEvents(beam.PTransform):
    """The day's events as contract record batches.

    Outputs a dict: "batches" (PCollection[pa.RecordBatch]), "missing_columns"
    (PCollection of (file, column names) for input files lacking contract columns) and
    "tally" (PCollection of partial tallies: "missing_partitions", the needed UTC dates
    with no data, and "new_columns", {"column", "type"} of input columns the contract
    lacks; CheckEvents merges them into the day's counts).

    A needed partition is missing when its dt= folder is absent or holds no Parquet
    file (export layout), or when no row of that UTC date was read (BigQuery); both are
    found in pipeline steps. The job then fails naming every missing partition, unless
    `allow_missing_partitions`, when it reads what exists and records them.
    """

    def __init__(self, events: str, span: DaySpan, allow_missing_partitions: bool = False):
        super().__init__()
        if not events:
            raise ValueError("--events is required: bq://project.dataset.table or a directory "
                             "in the export layout <dir>/dt=YYYY-MM-DD/*.parquet")
        if not isinstance(allow_missing_partitions, bool):
            raise ValueError(f"--allow_missing_partitions={allow_missing_partitions!r} must be "
                             "true or false")
        self._events = events
        self._span = span
        self._allow_missing = allow_missing_partitions
        self._table = parse_bigquery_table(events) if events.startswith("bq://") else None

    def _needed_dates(self) -> List[str]:
        return [d.isoformat() for d in self._span.utc_dates()]

    def expand(self, pbegin):
        if self._table is not None:
            return self._expand_bigquery(pbegin)
        needed = self._needed_dates()
        partitions = (pbegin
                      | "ListPartitions" >> beam.Create(
                          list(zip(needed, partition_dirs(self._events, self._span))))
                      | "ListFiles" >> beam.Map(partition_files))
        files = (partitions
                 | "FilesOfPartitions" >> beam.FlatMap(lambda partition: partition[1])
                 | "SpreadFiles" >> beam.Reshuffle())
        read = files | "ReadFiles" >> beam.ParDo(ReadParquetFile()).with_outputs(
            MISSING_COLUMNS, NEW_COLUMNS, main="batches")
        partitions_tally = (partitions
                            | "CountFiles" >> beam.Map(lambda p: {p[0]: len(p[1])})
                            | "SumFilesPerDate" >> beam.CombineGlobally(SumDateCounts())
                            | "RequirePartitions" >> beam.Map(
                                require_partitions, needed, self._events, self._allow_missing,
                                "have no Parquet file (folder absent or empty)"))
        columns_tally = (read[NEW_COLUMNS]
                         | "CollectNewColumns" >> beam.combiners.ToList()
                         | "DescribeNewColumns" >> beam.Map(new_columns_tally))
        tally = (partitions_tally, columns_tally) | "GatherReadTallies" >> beam.Flatten()
        return {"batches": read.batches, "missing_columns": read[MISSING_COLUMNS],
                "tally": tally}

    def _expand_bigquery(self, pbegin):
        table = self._table
        checked = (pbegin | "NameTable" >> beam.Create([table])
                   | "CheckTableSchema" >> beam.Map(check_bigquery_schema))
        rows = pbegin | "ReadTable" >> beam.io.ReadFromBigQuery(
            **bigquery_read_kwargs(table, self._span))
        batches = (rows
                   | "BatchRows" >> beam.BatchElements(min_batch_size=1024,
                                                       max_batch_size=READ_BATCH_ROWS)
                   | "RowsToArrow" >> beam.Map(
                       lambda rows, _checked: rows_to_batch(rows),
                       _checked=beam.pvalue.AsSingleton(checked)))
        counted = batches | "CountRows" >> beam.Map(_count_rows)
        missing = pbegin | "NoMissingColumns" >> beam.Create([])
        return {"batches": counted, "missing_columns": missing,
                "tally": tally_bigquery_read(counted, checked, table.spec, self._needed_dates(),
                                             self._allow_missing)}


def tally_bigquery_read(batches, checked, table: str, needed: Sequence[str],
                        allow_missing: bool):
    """The BigQuery reader's tallies: rows per UTC date of the read batches compared with
    the needed dates, and the live table's new columns (from the schema check)."""
    partitions_tally = (batches
                        | "CountRowsPerDate" >> beam.Map(rows_by_utc_date)
                        | "SumRowsPerDate" >> beam.CombineGlobally(SumDateCounts())
                        | "RequirePartitions" >> beam.Map(
                            require_partitions, needed, f"bq://{table}", allow_missing,
                            "have no rows"))
    columns_tally = checked | "DescribeNewColumns" >> beam.Map(
        lambda columns, spec: new_columns_tally([(spec, columns)]), table)
    return (partitions_tally, columns_tally) | "GatherReadTallies" >> beam.Flatten()


_ROWS_READ = Metrics.counter("events", "rows_read")


def _count_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    _ROWS_READ.inc(batch.num_rows)
    return batch


def read_parquet_table(path: str, columns: Optional[Sequence[str]] = None,
                       event_names: Optional[Sequence[str]] = None) -> pa.Table:
    """One validated Parquet file (all contract columns, or just `columns`; all rows,
    or just those whose event_name is one of `event_names`, filtered while reading)."""
    wanted = list(columns or contract.COLUMN_NAMES)
    filters = [("event_name", "in", list(event_names))] if event_names else None
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            table = pq.read_table(handle, columns=wanted, filters=filters)
    except (OSError, pa.ArrowException) as err:
        if not FileSystems.exists(path):
            raise IOError(f"validated file {path} is gone: the day was published again while "
                          "this job read it; rerun the job") from err
        raise IOError(f"cannot read validated file {path}: {err}") from err
    if columns:
        expected = contract.arrow_schema()
        for name in wanted:
            if table.schema.field(name).type != expected.field(name).type:
                raise ValueError(f"{path}: column {name} is {table.schema.field(name).type}, "
                                 f"the contract says {expected.field(name).type}")
        # One chunk per column: pickled chunks each carry the whole buffer they share.
        return table.combine_chunks()
    batch, missing = conform(table, path)
    if missing:
        raise ValueError(f"{path} lacks contract columns {missing}: not a validated file")
    return pa.Table.from_batches([batch])


def validated_files(day_dir: str) -> List[str]:
    """The Parquet files of a published validated/dt=D folder: the `part` file set of the
    manifest its _SUCCESS names (never a glob, so no other run's files)."""
    return published_files(day_dir, "part")


class ReadValidatedEvents(beam.PTransform):
    """The validated Parquet of a blessed day: {"valid": PCollection[pa.Table],
    "gate": PCollection with the day's validation summary}.

    The gate step fails the pipeline when the day is not blessed; publishing steps
    take it as a side input, so reading need not wait for it."""

    def __init__(self, validated_root: str, run_date: str,
                 columns: Optional[Sequence[str]] = None,
                 event_names: Optional[Sequence[str]] = None):
        super().__init__()
        self._root, self._run_date = validated_root.rstrip("/"), run_date
        self._columns = tuple(columns) if columns else None
        self._event_names = tuple(event_names) if event_names else None

    def expand(self, pbegin):
        run_date, root = self._run_date, self._root
        columns, event_names = self._columns, self._event_names
        gate = (pbegin | "NameValidatedDay" >> beam.Create([root])
                | "RequireBlessedDay" >> beam.Map(blessed_summary, run_date))
        tables = (pbegin
                  | "ListValidatedDay" >> beam.Create([f"{root}/dt={run_date}"])
                  | "ListValidatedFiles" >> beam.FlatMap(validated_files)
                  | "SpreadValidatedFiles" >> beam.Reshuffle()
                  | "ReadValidatedFiles" >> beam.Map(read_parquet_table, columns, event_names))
        return {"valid": tables, "gate": gate}
