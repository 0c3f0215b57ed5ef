"""transforms.ingest.provenance: the suite's version and revision, and DescribeInput's one dict
(files with sizes, or the BigQuery table, row restriction and read time), made while
the pipeline runs."""

import datetime as dt
import os
import subprocess

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.common import span as span_lib, version
from transforms.ingest import provenance
from tests.helpers.paths import ROOT

SEOUL_DAY = span_lib.resolve_span("2026-11-26", "Asia/Seoul")  # UTC 11-25 15:00 to 11-26 15:00
READ_TIME = dt.datetime(2026, 11, 27, 6, 0, 3, tzinfo=dt.timezone.utc)


def fixed_clock():
    return READ_TIME


@pytest.mark.functions
def test_suite_revision_from_the_environment(monkeypatch):
    monkeypatch.setenv("SUITE_REVISION", "0123456789abcdef0123456789abcdef01234567")
    assert version.suite_revision() == "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.functions
def test_suite_revision_from_git(monkeypatch):
    monkeypatch.delenv("SUITE_REVISION", raising=False)
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert version.suite_revision() == head


@pytest.mark.functions
def test_suite_revision_outside_git(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_REVISION", raising=False)
    monkeypatch.setattr(version, "_ROOT", str(tmp_path))
    assert version.suite_revision() == "unknown"


@pytest.mark.functions
def test_suite_version(monkeypatch, tmp_path):
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        assert 'version="0.1.0"' in f.read()
    assert version.suite_version() == "0.1.0"

    def not_installed(name):
        raise version.importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(version.importlib.metadata, "version", not_installed)
    assert version.suite_version() == "0.1.0"           # from setup.py
    monkeypatch.setattr(version, "_ROOT", str(tmp_path))
    assert version.suite_version() == "unknown"


@pytest.mark.functions
def test_suite_fields(monkeypatch):
    monkeypatch.setenv("SUITE_REVISION", "abc1234")
    assert version.suite_fields() == {"suite_version": "0.1.0", "suite_revision": "abc1234"}


@pytest.mark.composites
def test_describe_files_of_the_day(tmp_path):
    events = tmp_path / "events"
    for rel, size in (("dt=2026-11-25/b.parquet", 30), ("dt=2026-11-25/a.parquet", 7),
                      ("dt=2026-11-26/part-0.parquet", 1234),
                      ("dt=2026-11-26/notes.txt", 5),        # not Parquet: not read
                      ("dt=2026-11-27/c.parquet", 99)):       # outside the span
        path = events / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    expected = {
        "kind": "files", "events": str(events),
        "partitions": ["dt=2026-11-25", "dt=2026-11-26"],
        "files": [{"path": str(events / "dt=2026-11-25/a.parquet"), "bytes": 7},
                  {"path": str(events / "dt=2026-11-25/b.parquet"), "bytes": 30},
                  {"path": str(events / "dt=2026-11-26/part-0.parquet"), "bytes": 1234}],
        "total_bytes": 1271,
    }
    with TestPipeline() as p:
        described = p | provenance.DescribeInput(str(events), SEOUL_DAY)
        assert_that(described, equal_to([expected]))


@pytest.mark.functions
def test_describe_a_missing_partition(tmp_path):
    events = tmp_path / "events"
    (events / "dt=2026-11-26").mkdir(parents=True)
    (events / "dt=2026-11-26" / "x.parquet").write_bytes(b"12")
    assert provenance.describe_files(str(events), SEOUL_DAY) == {
        "kind": "files", "events": str(events),
        "partitions": ["dt=2026-11-25", "dt=2026-11-26"],
        "files": [{"path": str(events / "dt=2026-11-26/x.parquet"), "bytes": 2}],
        "total_bytes": 2}


@pytest.mark.composites
def test_describe_bigquery():
    expected = {
        "kind": "bigquery", "events": "bq://demo-project.events.events",
        "table": "demo-project:events.events",
        "row_restriction": "event_timestamp >= TIMESTAMP '2026-11-25 00:00:00+00' "
                           "AND event_timestamp < TIMESTAMP '2026-11-27 00:00:00+00'",
        "read_time": "2026-11-27T06:00:03+00:00",
    }
    with TestPipeline() as p:
        described = p | provenance.DescribeInput("bq://demo-project.events.events",
                                                 SEOUL_DAY, clock=fixed_clock)
        assert_that(described, equal_to([expected]))


@pytest.mark.functions
def test_the_clock_is_read_while_the_pipeline_runs(tmp_path):
    """Building the transform reads no clock and lists no file."""
    calls = []

    def clock():
        calls.append(1)
        return READ_TIME
    pipeline = beam.Pipeline()
    _ = pipeline | provenance.DescribeInput("bq://demo-project.events.events", SEOUL_DAY,
                                            clock=clock)
    assert calls == []
    _ = pipeline | "Files" >> provenance.DescribeInput(str(tmp_path / "absent"), SEOUL_DAY)


@pytest.mark.functions
@pytest.mark.parametrize("events,message", [
    ("", "events is required"),
    ("bq://demo-project.events", "is not a BigQuery table"),
])
def test_bad_input_fails_at_construction(events, message):
    with pytest.raises(ValueError, match=message):
        provenance.DescribeInput(events, SEOUL_DAY)
