"""The row-check stage: out-of-span rows counted, bad rows quarantined with a
reason, duplicates dropped, and a tally that reconciles every row read.

The rules are plain functions in transforms/ingest/checks.py; this module wraps them in
Beam. Valid rows are sharded by a hash of event_id so that one shard holds every
copy of an event id, and de-duplication needs no per-row keys. The shard count is
--dedup_shards, or with 'auto' ceil(checked valid rows / --max_rows_per_shard),
counted while the pipeline runs.
"""

import datetime as dt
import hashlib
from typing import Dict, List, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from schemas import contract

from transforms.common.sharding import ResolveShardCount, resolve_shard_count, shard_ids, \
    split_by_shard
from transforms.common.span import DaySpan
from transforms.ingest import checks

TALLY_KEYS = ("rows_read", "out_of_span", "rows_quarantined", "duplicates_dropped", "rows_valid")
# Rows read and valid per source and per UTC partition (docs/validation.md#volume): a
# handful of keys each (two sources and "other"; the two or three UTC dates of a span).
VOLUME_KEYS = ("read_by_source", "valid_by_source", "read_by_partition", "valid_by_partition")
_DAY_US = 86_400_000_000


def volume_counts(batch) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(rows per source, rows per UTC date of event_timestamp) of a batch or table with
    the contract's source and event_timestamp: a source other than client and server
    counts as "other", a row without a timestamp under "none"."""
    if batch.num_rows == 0:
        return {}, {}
    source = checks.contract_column(batch, "source")
    known = pc.fill_null(pc.is_in(source, value_set=pa.array(contract.SOURCES)), False)
    names = pc.if_else(known, source, pa.scalar("other"))
    by_source = {row["values"]: row["counts"] for row in pc.value_counts(names).to_pylist()}
    ts_us = checks.contract_column(batch, "event_timestamp").cast(pa.int64())
    present = pc.is_valid(ts_us).to_numpy(zero_copy_only=False)
    values = pc.fill_null(ts_us, 0).to_numpy(zero_copy_only=False)
    by_day = {}
    if not present.all():
        by_day["none"] = int((~present).sum())
    days, counts = np.unique(np.floor_divide(values[present], _DAY_US), return_counts=True)
    for day, count in zip(days.tolist(), counts.tolist()):
        try:
            key = (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
        except OverflowError:      # before year 1 or after 9999: no partition holds it
            key = "out_of_range"
        by_day[key] = by_day.get(key, 0) + count
    return dict(sorted(by_source.items())), dict(sorted(by_day.items()))


def partition_hours(span: DaySpan) -> Dict[str, float]:
    """UTC date -> hours of the span [start, end) it covers (24 in all on most days; 23
    or 25 on a daylight-saving day)."""
    hours = {}
    moment = span.start
    while moment < span.end:
        next_day = dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(),
                                       tzinfo=dt.timezone.utc)
        until = min(next_day, span.end)
        hours[moment.date().isoformat()] = (until - moment).total_seconds() / 3600
        moment = until
    return hours


def volume_summary(counts: Dict) -> Dict:
    """summary.json's "volume": rows read and valid per source and per UTC partition,
    with the hours of the span each partition covers."""
    sources = sorted(set(counts.get("read_by_source", {})) | set(counts.get("valid_by_source", {})))
    spans = counts.get("span_hours", {})
    days = sorted(set(counts.get("read_by_partition", {})) |
                  set(counts.get("valid_by_partition", {})) | set(spans))
    return {
        "by_source": {s: {"rows_read": counts.get("read_by_source", {}).get(s, 0),
                          "rows_valid": counts.get("valid_by_source", {}).get(s, 0)}
                      for s in sources},
        "by_partition": {d: {"rows_read": counts.get("read_by_partition", {}).get(d, 0),
                             "rows_valid": counts.get("valid_by_partition", {}).get(d, 0),
                             "span_hours": spans.get(d, 0.0)}
                         for d in days},
    }


def empty_tally() -> Dict:
    tally = {key: 0 for key in TALLY_KEYS}
    tally["quarantined_by_reason"] = {}
    tally["input_anomalies"] = []
    tally["missing_partitions"] = []   # UTC dates (YYYY-MM-DD) the span needs that had no data
    tally["new_columns"] = []          # {"column", "type"} of input columns not in the contract
    for key in VOLUME_KEYS:
        tally[key] = {}
    return tally


def merge_tallies(tallies) -> Dict:
    """Sum partial tallies; input anomalies are merged per feature, missing partitions
    and new columns as sorted sets."""
    total = empty_tally()
    anomalies: Dict[str, Dict] = {}
    missing_partitions, new_columns = set(), set()
    for tally in tallies:
        for key in TALLY_KEYS:
            total[key] += tally.get(key, 0)
        for reason, count in tally.get("quarantined_by_reason", {}).items():
            total["quarantined_by_reason"][reason] = \
                total["quarantined_by_reason"].get(reason, 0) + count
        for anomaly in tally.get("input_anomalies", []):
            anomalies.setdefault(anomaly["feature"], anomaly)
        missing_partitions.update(tally.get("missing_partitions", []))
        for key in VOLUME_KEYS:
            for name, count in tally.get(key, {}).items():
                total[key][name] = total[key].get(name, 0) + count
        new_columns.update((c["column"], c["type"]) for c in tally.get("new_columns", []))
    total["quarantined_by_reason"] = dict(sorted(total["quarantined_by_reason"].items()))
    total["input_anomalies"] = [anomalies[f] for f in sorted(anomalies)]
    total["missing_partitions"] = sorted(missing_partitions)
    total["new_columns"] = [{"column": c, "type": t} for c, t in sorted(new_columns)]
    for key in VOLUME_KEYS:
        total[key] = dict(sorted(total[key].items()))
    return total


def missing_column_anomalies(missing: List) -> List[Dict]:
    """(file, columns) records -> one ERROR anomaly per contract column absent from input."""
    files_by_column: Dict[str, List[str]] = {}
    for path, columns in missing:
        for column in columns:
            files_by_column.setdefault(column, []).append(path)
    return [{"feature": column, "severity": "ERROR",
             "description": f"column {column} of the events contract is missing from "
                            f"{len(files)} input file(s), e.g. {sorted(files)[0]}"}
            for column, files in sorted(files_by_column.items())]


class MergeTallies(beam.CombineFn):
    def create_accumulator(self):
        return empty_tally()

    def add_input(self, accumulator, tally):
        return merge_tallies([accumulator, tally])

    def merge_accumulators(self, accumulators):
        return merge_tallies(accumulators)

    def extract_output(self, accumulator):
        return accumulator


class CheckRowsFn(beam.DoFn):
    """Record batch -> the checked valid rows (one pa.Table), quarantined rows, a tally."""

    QUARANTINE = "quarantine"
    TALLY = "tally"

    def __init__(self, start_us: int, end_us: int):
        self._start_us, self._end_us = start_us, end_us
        self._counters = {}
        self._out_of_span = Metrics.counter("events", "out_of_span")

    def _counter(self, reason):
        if reason not in self._counters:
            self._counters[reason] = Metrics.counter("quarantine", reason)
        return self._counters[reason]

    def process(self, batch: pa.RecordBatch):
        result = checks.check_rows(batch, self._start_us, self._end_us)
        by_reason = checks.reason_counts(result.quarantined)
        for reason, count in by_reason.items():
            self._counter(reason).inc(count)
        self._out_of_span.inc(result.out_of_span)
        tally = empty_tally()
        read_by_source, read_by_partition = volume_counts(batch)
        tally.update(rows_read=batch.num_rows, out_of_span=result.out_of_span,
                     rows_quarantined=result.quarantined.num_rows,
                     quarantined_by_reason=by_reason, read_by_source=read_by_source,
                     read_by_partition=read_by_partition)
        yield beam.pvalue.TaggedOutput(self.TALLY, tally)
        if result.quarantined.num_rows:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, result.quarantined)
        if result.valid.num_rows:
            yield pa.Table.from_batches([result.valid])


def shard_by_event_id(table: pa.Table, num_shards: int):
    """Checked valid rows -> (shard, sub-table) per non-empty event-id shard."""
    return split_by_shard(table, shard_ids(table.column("event_id"), num_shards), num_shards)


class DropDuplicatesFn(beam.DoFn):
    """All valid rows of one event-id shard -> one de-duplicated table and a tally."""

    TALLY = "tally"

    def __init__(self):
        self._dropped = Metrics.counter("events", "duplicates_dropped")
        self._valid = Metrics.counter("events", "rows_valid")

    def process(self, element):
        shard, tables = element
        table = pa.concat_tables(list(tables))
        kept, dropped = checks.deduplicate(table)
        self._dropped.inc(dropped)
        self._valid.inc(kept.num_rows)
        tally = empty_tally()
        valid_by_source, valid_by_partition = volume_counts(kept)
        tally.update(duplicates_dropped=dropped, rows_valid=kept.num_rows,
                     valid_by_source=valid_by_source, valid_by_partition=valid_by_partition)
        yield beam.pvalue.TaggedOutput(self.TALLY, tally)
        yield shard, kept


class CheckEvents(beam.PTransform):
    """Row checks, quarantine and de-duplication of one day.

    `dedup_shards` is the event-id shard count, 0 for auto: ceil(checked valid rows /
    max_rows_per_shard), at least 1, counted while the pipeline runs.

    Input: the dict from ReadEvents ("batches", "missing_columns" and, optionally,
    "tally": the reader's partial tallies of missing partitions and new columns, merged
    into "counts"). Output dict:
      "valid": PCollection of (shard, pa.Table) - de-duplicated valid rows, names normalised;
      "quarantine": PCollection of str - JSON lines, the original row plus the reason;
      "counts": PCollection with one dict - rows_read, out_of_span, rows_quarantined,
                quarantined_by_reason, duplicates_dropped, rows_valid, input_anomalies,
                missing_partitions, new_columns;
      "dedup_shards": PCollection with one int - the shard count used.
    """

    def __init__(self, span: DaySpan, dedup_shards: int = 0,
                 max_rows_per_shard: int = 1_000_000):
        super().__init__()
        if dedup_shards < 0:
            raise ValueError(f"--dedup_shards={dedup_shards} must be 'auto' or a whole "
                             "number >= 1")
        if max_rows_per_shard < 1:
            raise ValueError(f"--max_rows_per_shard={max_rows_per_shard} must be >= 1")
        self._span, self._dedup_shards = span, dedup_shards
        self._max_rows_per_shard = max_rows_per_shard

    def expand(self, inputs):
        checked = inputs["batches"] | "CheckRows" >> beam.ParDo(
            CheckRowsFn(self._span.start_us, self._span.end_us)).with_outputs(
            CheckRowsFn.QUARANTINE, CheckRowsFn.TALLY, main="valid")
        num_shards = (checked.valid
                      | "CountValidRows" >> beam.Map(lambda table: table.num_rows)
                      | "ResolveDedupShards" >> ResolveShardCount(self._dedup_shards,
                                                                  self._max_rows_per_shard))
        deduped = (checked.valid
                   | "ShardByEventId" >> beam.FlatMap(
                       shard_by_event_id, beam.pvalue.AsSingleton(num_shards))
                   | "GroupByEventId" >> beam.GroupByKey()
                   | "DropDuplicates" >> beam.ParDo(DropDuplicatesFn()).with_outputs(
                       DropDuplicatesFn.TALLY, main="valid"))
        lines = checked[CheckRowsFn.QUARANTINE] | "FormatQuarantine" >> beam.FlatMap(
            checks.quarantine_lines)
        input_anomalies = (inputs["missing_columns"]
                           | "CollectMissingColumns" >> beam.combiners.ToList()
                           | "DescribeMissingColumns" >> beam.Map(
                               lambda missing: dict(empty_tally(),
                                                    input_anomalies=missing_column_anomalies(
                                                        missing))))
        tallies = (checked[CheckRowsFn.TALLY], deduped[DropDuplicatesFn.TALLY], input_anomalies)
        if "tally" in inputs:
            tallies += (inputs["tally"],)
        span_hours = partition_hours(self._span)
        counts = (tallies
                  | "GatherTallies" >> beam.Flatten()
                  | "SumTallies" >> beam.CombineGlobally(MergeTallies())
                  | "AddSpanHours" >> beam.Map(lambda c: dict(c, span_hours=span_hours)))
        return {"valid": deduped.valid, "quarantine": lines, "counts": counts,
                "dedup_shards": num_shards}


# ---------------------------------------------------------------------------------------------
# The quarantine's files

def quarantine_bucket(line: str, num_buckets: int) -> int:
    """The file piece a quarantine line goes to: a stable hash of its text."""
    digest = hashlib.sha1(line.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_buckets


def quarantine_piece(element):
    """(bucket, lines) -> ("quarantine", bucket, lines sorted): the same lines give the
    same piece, so a retried bundle rewrites the same file with the same content."""
    bucket, lines = element
    return "quarantine", bucket, sorted(lines)


class GroupQuarantine(beam.PTransform):
    """Quarantine lines and the day's counts -> pieces (file set "quarantine", bucket,
    sorted lines) for PublishFileSets. The bucket count is ceil(quarantined rows /
    max_rows_per_shard): a piece holds at most about that many lines, and two copies of
    one line both stay (in one piece), which a piece named by its content would lose."""

    def __init__(self, max_rows_per_shard: int):
        super().__init__()
        if max_rows_per_shard < 1:
            raise ValueError(f"--max_rows_per_shard={max_rows_per_shard} must be >= 1")
        self._max_rows = max_rows_per_shard

    def expand(self, inputs):
        max_rows = self._max_rows
        buckets = inputs["counts"] | "CountQuarantineBuckets" >> beam.Map(
            lambda counts: resolve_shard_count(0, counts["rows_quarantined"], max_rows))
        return (inputs["lines"]
                | "KeyByBucket" >> beam.Map(lambda line, n: (quarantine_bucket(line, n), line),
                                            beam.pvalue.AsSingleton(buckets))
                | "GroupByBucket" >> beam.GroupByKey()
                | "SortLines" >> beam.Map(quarantine_piece))
