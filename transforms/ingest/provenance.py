"""What a manifest records about the input a run read (docs/publishing.md).

DescribeInput lists the input's files, or names the BigQuery read, while the pipeline
runs: nothing here calls a cloud API when the pipeline is built. The suite's own version
fields are transforms.common.version's.
"""

import datetime as dt
from typing import Callable, Dict, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.common.span import DaySpan
from transforms.ingest import read
from transforms.publishing.readers import published_manifest


def describe_files(events_dir: str, span: DaySpan) -> Dict:
    """Every Parquet file of the span's UTC partitions with its size, sorted by path
    (the files the reader reads: <dir>/dt=YYYY-MM-DD/*.parquet)."""
    partitions = read.partition_dirs(events_dir, span)
    results = FileSystems.match([f"{d}/*.parquet" for d in partitions])
    files = sorted(({"path": m.path, "bytes": m.size_in_bytes}
                    for result in results for m in result.metadata_list),
                   key=lambda f: f["path"])
    return {"kind": "files", "events": events_dir,
            "partitions": [p.rpartition("/")[2] for p in partitions],
            "files": files, "total_bytes": sum(f["bytes"] for f in files)}


def describe_bigquery(events: str, span: DaySpan, read_time: dt.datetime) -> Dict:
    table = read.parse_bigquery_table(events)
    return {"kind": "bigquery", "events": events, "table": table.spec,
            "row_restriction": read.row_restriction(span),
            "read_time": read_time.astimezone(dt.timezone.utc).isoformat()}


def describe_validated(validated_root: str, run_date: str) -> Dict:
    """The blessed validated day a run read: its run id and every file with its size,
    from its manifest."""
    day_dir = f"{validated_root.rstrip('/')}/dt={run_date}"
    manifest = published_manifest(day_dir)
    files = sorted(({"path": f"{day_dir}/{f['name']}", "bytes": f["size_bytes"]}
                    for entry in manifest["file_sets"].values() for f in entry["files"]),
                   key=lambda f: f["path"])
    return {"kind": "validated", "events": validated_root, "run_id": manifest["run_id"],
            "input": manifest.get("input_provenance"), "files": files,
            "total_bytes": sum(f["bytes"] for f in files)}


class DescribeValidated(beam.PTransform):
    """PBegin -> one dict describing the validated day a run reads (while it runs)."""

    def __init__(self, validated_root: str, run_date: str):
        super().__init__()
        self._root, self._day = validated_root, run_date

    def expand(self, pbegin):
        root, day = self._root, self._day
        return (pbegin | "StartDescription" >> beam.Create([None])
                | "DescribeValidatedDay" >> beam.Map(lambda _: describe_validated(root, day)))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class DescribeInput(beam.PTransform):
    """PBegin -> one dict describing the run's input, made while the pipeline runs:
    {"kind": "files", "events", "partitions", "files": [{"path", "bytes"}],
    "total_bytes"} for an export directory, or {"kind": "bigquery", "events", "table",
    "row_restriction", "read_time"} for bq://project.dataset.table, where read_time is
    when this step ran (UTC, ISO 8601), beside the read of the same run."""

    def __init__(self, events: str, span: DaySpan,
                 clock: Optional[Callable[[], dt.datetime]] = None):
        super().__init__()
        if not events:
            raise ValueError("DescribeInput: events is required (bq://project.dataset.table "
                             "or a directory)")
        if events.startswith("bq://"):
            read.parse_bigquery_table(events)   # a malformed table fails here
        self._events, self._span = events, span
        self._clock = clock or utc_now

    def expand(self, pbegin):
        events, span, clock = self._events, self._span, self._clock
        if events.startswith("bq://"):
            describe = lambda _: describe_bigquery(events, span, clock())  # noqa: E731
        else:
            describe = lambda _: describe_files(events, span)  # noqa: E731
        return (pbegin
                | "StartDescription" >> beam.Create([None])
                | "DescribeEvents" >> beam.Map(describe))
