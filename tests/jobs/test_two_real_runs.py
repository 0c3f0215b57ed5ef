"""Tier 3: two real job processes started together into one output folder. Two
validate_events runs of one day (the morning job and a person's rerun): whichever way
they interleave, the day read through _SUCCESS afterwards is complete; both exit 0 when
they did not overlap, otherwise one fails saying another run took the day. Two graph
runs of different days (the morning job and a backfill): the article index never forks;
both exit 0, or one fails saying another run extended the index first."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

import datetime as dt

from tests.helpers.index_runs import check_one_index
from tests.helpers.jobs import RUN_DATE, summary_of, write_day
from tests.helpers.paths import ROOT
from transforms.publishing.latest import read_latest
from transforms.publishing.readers import published_files, published_manifest, read_jsonl_file

pytestmark = pytest.mark.jobs

LOST = ("was moved by another run while this run", "was published again by run")


def start(events, out, job="validate_events", run_date=RUN_DATE, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", f"beam_jobs.{job}", "--runner=FnApiRunner",
         f"--events={events}", f"--run_date={run_date}", f"--output_dir={out}", *extra],
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


INDEX_LOST = ("the article index moved while this run ran", "is made once and never replaced")


def test_two_graph_processes_of_different_days_at_once_never_fork_the_index(tmp_path):
    days = {"2026-11-25": 41, "2026-11-26": 42}
    for day, seed in days.items():
        write_day(tmp_path / day, 1500, seed=seed, run_date=dt.date.fromisoformat(day))
    out = str(tmp_path / "out")
    runs = [start(tmp_path / day, out, "cooccurrence_graph", day, "--allow_anomalies")
            for day in days]
    ended = [run.communicate(timeout=240) for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(codes) in ([0, 0], [0, 1]), [err[-3000:] for _, err in ended]
    for day, code, (_, err) in zip(days, codes, ended):
        graph_day = f"{out}/cooccurrence/dt={day}/_SUCCESS"
        if code:
            assert any(said in err for said in INDEX_LOST), err[-3000:]
            assert not FileSystems.exists(graph_day)
        else:
            assert FileSystems.exists(graph_day)
    chain = check_one_index(out, days)
    assert len(chain) == codes.count(0)
