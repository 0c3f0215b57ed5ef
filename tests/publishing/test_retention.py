"""Retention (transforms/publishing/retention.py, docs/publishing.md#retention): which
runs' files a sweep deletes and when, on a local folder and on the fake object store;
run ids that carry their start time; the sweep's bounded reach over a kind's days."""

import datetime as dt

import pytest
from apache_beam.io.filesystems import FileSystems

from tests.helpers.publishing_days import DUE, NOW, after_retention, clock, listing, \
    published_names, reader_view, expected_view, run_names, write_run
from transforms.publishing.files import WITHDRAWN
from transforms.publishing.latest import withdraw_folder
from transforms.publishing.protocol import PublishFileSets, publish_day
from transforms.publishing.retention import DEFAULT_KEEP_HOURS, check_keep_hours, \
    expired_runs, files_by_run, sweep, sweep_folders
from transforms.publishing.runs import new_run_id, parse_stamp, run_id_time, stamp

pytestmark = pytest.mark.functions

UTC = dt.timezone.utc
A, B, C, D = ("20261126T010000Z-aaaaaaa1", "20261126T020000Z-bbbbbbb2",
              "20261126T030000Z-ccccccc3", "20261126T040000Z-ddddddd4")
SETS = ("edges", "quarantine", "empty")


def t(hour, day=26):
    return dt.datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def manifest(replaces="", committed=None):
    return {"replaces": replaces, "committed_at": stamp(committed) if committed else None}


# ---------------------------------------------------------------------- run ids and times

def test_run_ids_carry_their_start_time():
    run_id = new_run_id(lambda: dt.datetime(2026, 11, 27, 5, 6, 7, 890, tzinfo=UTC))
    assert run_id.startswith("20261127T050607Z-") and len(run_id) == len(A)
    assert run_id_time(run_id) == dt.datetime(2026, 11, 27, 5, 6, 7, tzinfo=UTC)
    assert new_run_id(clock()) != new_run_id(clock())
    for text in ("", "hand-3", "20261127T050607Z-0ld0ld00", "20261399T000000Z-aaaaaaaa",
                 f"x{A}"):
        assert run_id_time(text) is None, text
    assert parse_stamp(stamp(NOW)) == NOW and parse_stamp(None) is None


def test_files_by_run_leaves_the_fixed_names_alone():
    names = ["_SUCCESS", "manifest.json", "stats_client.tfrecord", f"manifest-{A}.json",
             f"edges-00000-of-00002-{A}.tfrecord.gz", f"part-{B}-00003-000.parquet",
             f"_tmp-{B}-0a1b2c3d-manifest.json", f"transform-{C}/saved_model.pb",
             "edges-20261126T010000Z-0ld0ld00-00000-000.tfrecord.gz"]
    assert files_by_run(names) == {
        A: [f"manifest-{A}.json", f"edges-00000-of-00002-{A}.tfrecord.gz"],
        B: [f"part-{B}-00003-000.parquet", f"_tmp-{B}-0a1b2c3d-manifest.json"],
        C: [f"transform-{C}/saved_model.pb"]}


def test_keep_hours_is_a_number_of_hours_not_below_zero():
    assert check_keep_hours(0) == 0 and check_keep_hours(48) == 48
    for bad in (-1, float("inf")):
        with pytest.raises(ValueError, match=r"^--keep_replaced_hours=.* must be a number >= 0$"):
            check_keep_hours(bad)
    with pytest.raises(ValueError, match=r"^--keep_replaced_hours=-1 must be a number >= 0$"):
        PublishFileSets("/tmp/x", {}, keep_hours=-1)


# ---------------------------------------------------------------------- the rule

def test_a_replaced_run_expires_the_retention_after_the_commit_that_replaced_it():
    # D (current) replaced C at 10:00, C replaced B at 06:00, B replaced A at 05:00.
    manifests = {D: manifest(C, t(10)), C: manifest(B, t(6)), B: manifest(A, t(5)),
                 A: manifest("", t(1))}
    runs = [A, B, C, D]
    assert expired_runs(runs, D, manifests, {}, t(4)) == []
    assert expired_runs(runs, D, manifests, {}, t(5)) == [A]        # at the cutoff: due
    assert expired_runs(runs, D, manifests, {}, t(9)) == [A, B]
    assert expired_runs(runs, D, manifests, {}, t(10)) == [A, B, C]
    assert expired_runs(runs, D, manifests, {}, t(23, day=30)) == [A, B, C]   # never current


def test_a_run_off_the_chain_expires_by_its_newest_time():
    # B crashed before its commit (no manifest); C lost or was withdrawn.
    manifests = {D: manifest("", t(9)), C: manifest("", t(5))}
    runs = [B, C, D]
    assert expired_runs(runs, D, manifests, {}, t(1)) == []
    assert expired_runs(runs, D, manifests, {}, t(2)) == [B]         # from its start
    assert expired_runs(runs, D, manifests, {}, t(5)) == [B, C]      # from its commit
    withdrawn = {C: {"withdrawn_at": stamp(t(7))}}
    assert expired_runs(runs, D, manifests, withdrawn, t(6)) == [B]  # from its withdrawal
    assert expired_runs(runs, D, manifests, withdrawn, t(7)) == [B, C]
    # With nothing published (the day withdrawn), nothing is on a chain.
    assert expired_runs(runs, "", manifests, {}, t(9)) == [B, C, D]


def test_a_manifest_from_before_retention_times_the_replaced_run_by_the_replacer_start():
    manifests = {B: {"replaces": A}, A: {}}
    assert expired_runs([A, B], B, manifests, {}, t(1)) == []
    assert expired_runs([A, B], B, manifests, {}, t(2)) == [A]


# ---------------------------------------------------------------------- sweeps of folders

def test_the_sweep_reaches_the_kind_s_last_14_days_only(day):
    kind = day.rsplit("/", 1)[0]
    assert sweep_folders(day) == [f"{kind}/dt=2026-11-{d:02d}" for d in range(13, 27)]
    assert sweep_folders("/o/article_index/v=000004/") == ["/o/article_index/v=000004"]
    older, inside = f"{kind}/dt=2026-11-12", f"{kind}/dt=2026-11-13"
    for folder in (older, inside):
        publish_day(folder, A, write_run(folder, A, "a"), {}, SETS, clock=clock(t(1)))
        publish_day(folder, B, write_run(folder, B, "b"), {}, SETS, clock=clock(t(2)))
    gone = sweep(day, DEFAULT_KEEP_HOURS, DUE)
    assert gone and all(p.startswith(f"{inside}/") and A in p for p in gone)
    assert run_names(older, A) and not run_names(inside, A)
    assert listing(inside) == published_names(inside, B)


def test_a_withdrawn_run_s_files_stay_the_retention_after_the_withdrawal(day):
    publish_day(day, A, write_run(day, A, "a"), {"version": "a"}, SETS, clock=clock(t(1)))
    assert withdraw_folder(day, clock=clock(t(20)))
    assert not FileSystems.exists(f"{day}/_SUCCESS")
    assert WITHDRAWN.format(run_id=A) in listing(day)
    publish_day(day, B, write_run(day, B, "b"), {"version": "b"}, SETS, clock=clock(t(21)))
    assert reader_view(day) == expected_view("b")
    keep = dt.timedelta(hours=DEFAULT_KEEP_HOURS)
    assert after_retention(day, t(20) + keep - dt.timedelta(seconds=1)) == []
    withdrawn_files = run_names(day, A)
    assert after_retention(day, t(20) + keep) == withdrawn_files
    assert listing(day) == published_names(day, B)


def test_a_name_the_published_run_lists_stays_whoever_wrote_it(day):
    # A file of an expired run that the published run lists (as the features gate
    # lists files under fixed names) is not the expired run's to delete.
    publish_day(day, A, write_run(day, A, "a"), {}, SETS, clock=clock(t(1)))
    shared = [r for r in write_run(day, A, "a") if r.file_set == "quarantine"]
    records = [r for r in write_run(day, B, "b") if r.file_set != "quarantine"] + shared
    publish_day(day, B, records, {}, SETS, clock=clock(t(2)))
    gone = after_retention(day)
    assert gone and not any(r.name in gone for r in shared)
    assert listing(day) == published_names(day, B)
