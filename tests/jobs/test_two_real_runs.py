"""Tier 3: two real validate_events processes of one generated day, started together
into one output folder (the morning job and a person's rerun). Whichever way they
interleave, the day read through _SUCCESS afterwards is complete: both exit 0 when
they did not overlap, otherwise one fails saying another run took the day."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from tests.helpers.jobs import RUN_DATE, summary_of, write_day
from tests.helpers.paths import ROOT
from transforms.publishing.latest import read_latest
from transforms.publishing.readers import published_files, published_manifest, read_jsonl_file

pytestmark = pytest.mark.jobs

LOST = ("was moved by another run while this run", "was published again by run")


def start(events, out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", "beam_jobs.validate_events", "--runner=FnApiRunner",
         f"--events={events}", f"--run_date={RUN_DATE}", f"--output_dir={out}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_validate_events_processes_at_once_leave_one_complete_day(tmp_path):
    day = write_day(tmp_path / "events", 3000, seed=21)
    out = str(tmp_path / "out")
    runs = [start(tmp_path / "events", out) for _ in range(2)]
    ended = [run.communicate(timeout=240) for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(codes) in ([0, 0], [0, 1]), [err[-3000:] for _, err in ended]
    for code, (_, err) in zip(codes, ended):
        if code:
            assert any(said in err for said in LOST), err[-3000:]
    # The day as a reader finds it: every kind complete, as its own manifest says.
    summary = summary_of(out)
    assert summary["blessed"] is True and summary["rows_read"] == day.table.num_rows
    assert summary["rows_read"] == summary["out_of_span"] + summary["rows_quarantined"] + \
        summary["duplicates_dropped"] + summary["rows_valid"]
    validated = f"{out}/validated/dt={RUN_DATE}"
    manifest = published_manifest(validated)
    ids = [i for path in published_files(validated, "part")
           for i in pq.read_table(FileSystems.open(path, compression_type="uncompressed"),
                                  columns=["event_id"]).column("event_id").to_pylist()]
    assert len(ids) == len(set(ids)) == manifest["file_sets"]["part"]["rows"] == \
        manifest["validation"]["rows_valid"] == summary["rows_valid"] > 0
    quarantine = f"{out}/quarantine/dt={RUN_DATE}"
    lines = [line for path in published_files(quarantine, "quarantine")
             for line in read_jsonl_file(path)]
    assert len(lines) == published_manifest(quarantine)["file_sets"]["quarantine"]["rows"] \
        == summary["rows_quarantined"] > 0
    assert read_latest(f"{out}/validated") == RUN_DATE
