"""What a manifest records about where its day came from: the suite (version and git
revision) and the input the run read.

suite_fields() is plain and cheap (no cloud call). DescribeInput lists the input's
files, or names the BigQuery read, while the pipeline runs: nothing here calls a cloud
API when the pipeline is built.
"""

import datetime as dt
import importlib.metadata
import os
import re
import subprocess
from typing import Callable, Dict, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms import read
from transforms.span import DaySpan

DISTRIBUTION = "marketplace-preprocessing"
UNKNOWN = "unknown"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def suite_version() -> str:
    """The installed distribution's version, else setup.py's (a checkout that is not
    installed), else 'unknown'."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with open(os.path.join(_ROOT, "setup.py"), encoding="utf-8") as handle:
            found = re.search(r'^\s*version="([^"]+)"', handle.read(), re.M)
    except OSError:
        return UNKNOWN
    return found.group(1) if found else UNKNOWN


def suite_revision() -> str:
    """SUITE_REVISION (a build argument of the image), else the git revision of the
    checkout the code runs from, else 'unknown'."""
    revision = os.environ.get("SUITE_REVISION", "").strip()
    if revision:
        return revision
    if not os.path.exists(os.path.join(_ROOT, ".git")):
        return UNKNOWN
    try:
        proc = subprocess.run(["git", "-C", _ROOT, "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    revision = proc.stdout.strip()
    return revision if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", revision) \
        else UNKNOWN


_SUITE: Dict[str, str] = {}


def suite_fields() -> Dict[str, str]:
    """{"suite_version", "suite_revision"}; the version and the git lookup are worked out
    once per process (SUITE_REVISION, when set, is read every time)."""
    if not _SUITE:
        _SUITE.update(suite_version=suite_version(), git=suite_revision())
    revision = os.environ.get("SUITE_REVISION", "").strip() or _SUITE["git"]
    return {"suite_version": _SUITE["suite_version"], "suite_revision": revision}


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
    from transforms.publish import published_manifest
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
