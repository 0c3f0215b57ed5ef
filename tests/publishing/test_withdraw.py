"""LATEST and the withdrawal of a refused day (transforms/publishing/latest.py:
update_latest, day_bases, withdraw_day), on a local folder and on the fake object store
(tests/helpers/fake_object_store.py), and through the daily job (tier 3)."""

import datetime as dt
import json

import pytest
from apache_beam.io.filesystems import FileSystems

from tests.helpers.fake_object_store import FakeConditionalStore, FakeObjectStore
from tests.helpers.turns import Turns, interleavings
from transforms.publishing.files import SUCCESS
from transforms.publishing.latest import LATEST, day_bases, published_days, read_latest, \
    update_latest, withdraw_day, withdraw_folder
from transforms.publishing.protocol import publish_day, read_base
from transforms.publishing.readers import published_files, read_jsonl_file
from transforms.publishing.writers import write_piece

RUN = "20261127T010000Z-4e3e3e30"
KINDS = ("validated", "cooccurrence", "examples/skipgram", "features/user", "quarantine")


# Tier 1 unless a test says otherwise (the pipelines are tier 2, a whole run tier 3).
@pytest.fixture(params=["local", "fakeobj"])
def out(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
    else:
        FakeObjectStore.reset()
        yield "fakeobj://bucket/out"
        FakeObjectStore.reset()


def publish(out, kind, day, run_id=RUN):
    """A one-file day of `kind` published by publish_day."""
    final = f"{out}/{kind}/dt={day}"
    records = list(write_piece(final, run_id, "jsonl", "lines", "k", [json.dumps([kind, day])],
                               1 << 20))
    publish_day(final, run_id, records, {"kind": kind})
    return final


def latest_raw(out, kind):
    path = f"{out}/{kind}/{LATEST}"
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read().decode()


def success(out, kind, day):
    return FileSystems.exists(f"{out}/{kind}/dt={day}/{SUCCESS}")


# ---------------------------------------------------------------------- LATEST


@pytest.mark.functions
def test_latest_follows_the_newest_published_day_and_a_backfill_leaves_it(out):
    assert read_latest(f"{out}/cooccurrence") == ""
    publish(out, "cooccurrence", "2026-11-25")
    assert latest_raw(out, "cooccurrence") == "2026-11-25\n"
    publish(out, "cooccurrence", "2026-11-27")
    assert latest_raw(out, "cooccurrence") == "2026-11-27\n"
    # A backfill of an older day: published, LATEST stays.
    publish(out, "cooccurrence", "2026-11-26")
    assert success(out, "cooccurrence", "2026-11-26")
    assert latest_raw(out, "cooccurrence") == "2026-11-27\n"
    # Republishing the latest day keeps it.
    publish(out, "cooccurrence", "2026-11-27", run_id="20261128T010000Z-aaaaaaaa")
    assert latest_raw(out, "cooccurrence") == "2026-11-27\n"
    assert published_days(f"{out}/cooccurrence") == ["2026-11-25", "2026-11-26", "2026-11-27"]
    # Each kind has its own; a folder not named dt=YYYY-MM-DD gets none.
    publish(out, "examples/skipgram", "2026-11-24")
    assert latest_raw(out, "examples/skipgram") == "2026-11-24\n"
    assert latest_raw(out, "cooccurrence") == "2026-11-27\n"
    final = f"{out}/misc/snapshot"
    publish_day(final, RUN, list(write_piece(final, RUN, "jsonl", "lines", "k", ["1"], 1 << 20)),
                {})
    assert not FileSystems.exists(f"{out}/misc/{LATEST}")
    assert not FileSystems.exists(f"{final}/{LATEST}")


@pytest.mark.functions
def test_latest_is_written_after_success(out):
    """A reader following LATEST never finds a day without _SUCCESS: LATEST is written
    after the day's _SUCCESS."""
    FakeObjectStore.inject(None)
    publish(out, "validated", "2026-11-26")
    if out.startswith("fakeobj://"):
        writes = [path for kind, path in FakeObjectStore.log if kind == "write"]
        assert writes.index(f"{out}/validated/{LATEST}") > \
            writes.index(f"{out}/validated/dt=2026-11-26/{SUCCESS}")
    assert latest_raw(out, "validated") == "2026-11-26\n"


# ---------------------------------------------------------------------- withdraw_day


@pytest.mark.functions
def test_withdraw_folder_only_from_the_generation_the_run_read(out):
    """The features gate withdraws its entity's day from the generation its run read at
    the start: not a day published since, nor one published for the first time since."""
    folder = publish(out, "features/users", "2026-11-26", run_id="20261126T010000Z-first000")
    start = read_base(folder).generation
    publish(out, "features/users", "2026-11-26", run_id="20261126T020000Z-other000")
    assert withdraw_folder(folder, start) is False
    assert success(out, "features/users", "2026-11-26")
    fresh = f"{out}/features/articles/dt=2026-11-26"
    assert read_base(fresh).generation == 0
    publish(out, "features/articles", "2026-11-26", run_id="20261126T020000Z-other000")
    assert withdraw_folder(fresh, 0) is False
    assert success(out, "features/articles", "2026-11-26")
    assert withdraw_folder(folder, read_base(folder).generation) is True
    assert not success(out, "features/users", "2026-11-26")
    assert read_latest(f"{out}/features/users") == ""


@pytest.mark.functions
def test_a_refusal_never_withdraws_what_another_run_published_after_it_started(out):
    """A refused run read the day at its start (day_bases); meanwhile another run
    republished validated/ and published cooccurrence/ for the first time. The refusal
    withdraws only what is still as it read it."""
    for kind in ("validated", "examples/skipgram", "features/user"):
        publish(out, kind, "2026-11-26", run_id="20261126T010000Z-first000")
    bases = day_bases(out, "2026-11-26")
    assert sorted(bases) == [f"{out}/{kind}/dt=2026-11-26/{SUCCESS}"
                             for kind in ("examples/skipgram", "features/user", "validated")]
    other = "20261126T020000Z-other000"
    publish(out, "validated", "2026-11-26", run_id=other)
    publish(out, "cooccurrence", "2026-11-26", run_id=other)
    assert withdraw_day(out, "2026-11-26", bases) == ["examples/skipgram", "features/user"]
    assert not success(out, "examples/skipgram", "2026-11-26")
    assert not success(out, "features/user", "2026-11-26")
    for kind in ("validated", "cooccurrence"):
        with FileSystems.open(f"{out}/{kind}/dt=2026-11-26/{SUCCESS}",
                              compression_type="uncompressed") as handle:
            assert handle.read() == f"{other}\n".encode(), kind
        assert latest_raw(out, kind) == "2026-11-26\n", kind


@pytest.mark.functions
def test_withdraw_day_unpublishes_every_kind_but_the_quarantine(out):
    for kind in KINDS:
        publish(out, kind, "2026-11-25")
        publish(out, kind, "2026-11-26")
    publish(out, "examples/ranking", "2026-11-25")    # no 11-26: nothing to withdraw
    publish(out, "report", "2026-11-26")
    withdrawn = withdraw_day(out, "2026-11-26")
    assert withdrawn == ["cooccurrence", "examples/skipgram", "features/user", "validated"]
    for kind in KINDS[:-1]:
        assert not success(out, kind, "2026-11-26"), kind
        assert success(out, kind, "2026-11-25"), kind
        assert latest_raw(out, kind) == "2026-11-25\n", kind
        assert published_days(f"{out}/{kind}") == ["2026-11-25"]
    # The quarantine of a refused day stays published.
    assert success(out, "quarantine", "2026-11-26")
    assert latest_raw(out, "quarantine") == "2026-11-26\n"
    assert len(published_files(f"{out}/quarantine/dt=2026-11-26", "lines")) == 1
    assert latest_raw(out, "examples/ranking") == "2026-11-25\n"
    # The day's report is never withdrawn: a refused day keeps its page (docs/report.md).
    assert success(out, "report", "2026-11-26")
    assert latest_raw(out, "report") == "2026-11-26\n"
    # Again: nothing left to withdraw.
    assert withdraw_day(out, "2026-11-26") == []


@pytest.mark.functions
def test_withdraw_day_moves_latest_back_only_when_it_names_the_day(out):
    publish(out, "validated", "2026-11-24")
    publish(out, "validated", "2026-11-26")
    publish(out, "validated", "2026-11-25")   # backfill: LATEST stays 11-26
    # Withdrawing the backfilled day leaves LATEST.
    assert withdraw_day(out, "2026-11-25") == ["validated"]
    assert latest_raw(out, "validated") == "2026-11-26\n"
    # Withdrawing the day LATEST names moves it to the newest day left.
    assert withdraw_day(out, "2026-11-26") == ["validated"]
    assert latest_raw(out, "validated") == "2026-11-24\n"
    # None left: LATEST is empty (rewritten, not deleted: see reset_latest).
    assert withdraw_day(out, "2026-11-24") == ["validated"]
    assert latest_raw(out, "validated") == ""
    assert read_latest(f"{out}/validated") == ""
    # A later publish starts it again.
    publish(out, "validated", "2026-11-23")
    assert latest_raw(out, "validated") == "2026-11-23\n"


@pytest.mark.functions
def test_a_crash_inside_withdraw_day_then_a_rerun_ends_withdrawn(out):
    """A crash at any write, rename or delete of withdraw_day never leaves LATEST naming a
    day without _SUCCESS, and running it again (the gate's rerun) ends with the day
    withdrawn and LATEST moved back."""
    from tests.helpers.fake_object_store import Crash, patch_local_faults
    import _pytest.monkeypatch
    kinds = ("validated", "examples/skipgram")
    for k in range(1, 40):
        with _pytest.monkeypatch.MonkeyPatch.context() as patch:
            if not out.startswith("fakeobj://"):
                patch_local_faults(patch)
            root = f"{out}/k{k}"
            for kind in kinds:
                publish(root, kind, "2026-11-25")
                publish(root, kind, "2026-11-26")
            FakeObjectStore.inject(k)
            try:
                withdraw_day(root, "2026-11-26")
                crashed = False
            except Crash:
                crashed = True
            FakeObjectStore.inject(None)
            for kind in kinds:
                latest = read_latest(f"{root}/{kind}")
                assert success(root, kind, latest), (k, kind, latest)
            withdraw_day(root, "2026-11-26")
            for kind in kinds:
                assert not success(root, kind, "2026-11-26"), (k, kind)
                assert latest_raw(root, kind) == "2026-11-25\n", (k, kind)
        if not crashed:
            break
    assert not crashed and k > 2


@pytest.mark.functions
def test_withdraw_day_on_an_empty_output_dir(out):
    assert withdraw_day(out, "2026-11-26") == []


# ---------------------------------------------------------------------- tier 3: the daily job


@pytest.mark.jobs
def test_a_refused_rerun_withdraws_the_day_and_moves_latest_back(tmp_path):
    """validated/dt=11-25 is published (by publish_day); the daily job publishes 11-26
    (good), then reruns 11-26 with 30% unknown event names: the job fails, summary.json is
    not blessed and lists the withdrawn kinds, validated and cooccurrence of 11-26 lose
    _SUCCESS, validated's LATEST goes back to 11-25 and cooccurrence's (no other day) is
    deleted; the refused day keeps its quarantine. Two job runs of 3,000 rows."""
    from beam_jobs import daily
    from tests.helpers.jobs import LOCAL, summary_of, write_day
    prev, day = "2026-11-25", "2026-11-26"
    out = str(tmp_path / "out")
    publish(out, "validated", prev)
    write_day(tmp_path / "good", 3000, seed=6, run_date=dt.date(2026, 11, 26))
    daily.run(LOCAL + [f"--events={tmp_path / 'good'}", f"--run_date={day}",
                       f"--output_dir={out}"])
    assert (summary_of(out, day)["blessed"], summary_of(out, day)["withdrawn"]) == (True, [])
    for kind in ("validated", "cooccurrence", "quarantine"):
        assert success(out, kind, day) and latest_raw(out, kind) == f"{day}\n", kind

    write_day(tmp_path / "bad", 3000, seed=6, breakage="unknown_name:0.3",
              run_date=dt.date(2026, 11, 26))
    with pytest.raises(Exception, match="not blessed"):
        daily.run(LOCAL + [f"--events={tmp_path / 'bad'}", f"--run_date={day}",
                           f"--output_dir={out}"])
    s = summary_of(out, day)
    examples = ["examples/ranking", "examples/sequences", "examples/skipgram"]
    assert (s["blessed"], s["withdrawn"]) == (False, ["cooccurrence"] + examples + ["validated"])
    # Refused for its quarantined share, said in words.
    assert s["reasons"] == ["quarantine_fraction"]
    assert s["quarantined_by_reason"]["unknown_event_name"] >= 0.3 * 3000 * 0.9
    gate = [a for a in s["anomalies"] if a["environment"] == "DATASET"]
    assert [(a["feature"], a["severity"]) for a in gate] == [("event_name", "ERROR")]
    assert gate[0]["description"].startswith(
        f"{s['rows_quarantined'] / (s['rows_read'] - s['out_of_span']):.2%} of the rows "
        "in the span were quarantined (max 5.00%): unknown_event_name ")
    assert not success(out, "validated", day) and not success(out, "cooccurrence", day)
    for kind in examples:
        assert not success(out, kind, day) and latest_raw(out, kind) in (None, ""), kind
    # Article index versions are never withdrawn: the day's version stays current.
    from transforms.graph import index_store
    assert index_store.read_current(out) == 1 and index_store.published_versions(out) == [1]
    assert success(out, "validated", prev) and latest_raw(out, "validated") == f"{prev}\n"
    assert latest_raw(out, "cooccurrence") in (None, "")
    # The refused day's quarantine is published (by this run) and stays.
    assert success(out, "quarantine", day) and latest_raw(out, "quarantine") == f"{day}\n"
    lines = sum(len(read_jsonl_file(path))
                for path in published_files(f"{out}/quarantine/dt={day}", "quarantine"))
    assert lines == s["rows_quarantined"]


@pytest.mark.functions
@pytest.mark.parametrize("other", ["2026-11-25", "2026-11-27"])
def test_latest_under_any_interleaving_of_two_publishes_and_a_withdrawal(other, monkeypatch):
    """P publishes 11-26 (its _SUCCESS is committed; it moves LATEST), Q publishes
    `other` likewise, W withdraws 11-26. Whatever the order of their reads and writes of
    LATEST and _SUCCESS, LATEST ends on the newest day still published and never names a
    withdrawn day."""
    kind = "fakeobj://bucket/out/validated"
    steps = {"P": lambda: update_latest(kind, "2026-11-26"),
             "Q": lambda: update_latest(kind, other),
             "W": lambda: withdraw_folder(f"{kind}/dt=2026-11-26")}

    def prepare():
        FakeObjectStore.reset()
        for day in ("2026-11-24", "2026-11-26", other):
            records = list(write_piece(f"{kind}/dt={day}", RUN, "jsonl", "lines", "k",
                                       ["{}"], 1 << 20))
            publish_day(f"{kind}/dt={day}", RUN, records, {})
        # LATEST as the earlier publishes of P and Q had not moved it yet.
        FakeObjectStore.put(f"{kind}/{LATEST}", b"2026-11-24\n")

    turns = {"now": None}
    read, write_if, delete_if = (FakeConditionalStore.read, FakeConditionalStore.write_if,
                                 FakeConditionalStore.delete_if)

    def stepping(method):
        def wrapped(self, *args):
            if turns["now"] is not None:
                turns["now"].step()
            return method(self, *args)
        return wrapped

    monkeypatch.setattr(FakeConditionalStore, "read", stepping(read))
    monkeypatch.setattr(FakeConditionalStore, "write_if", stepping(write_if))
    monkeypatch.setattr(FakeConditionalStore, "delete_if", stepping(delete_if))

    def run(schedule):
        turns["now"] = Turns(schedule)
        outcome = turns["now"].play(steps)
        turns["now"] = None
        assert not [v for v in outcome.values() if isinstance(v, Exception)], outcome

    counts = {}
    for name in steps:                        # each run's reads and writes, alone
        prepare()
        calls = []
        turns["now"] = type("Count", (), {"step": lambda self: calls.append(1)})()
        steps[name]()
        turns["now"] = None
        counts[name] = len(calls)
    assert counts["P"] == 2 and counts["W"] >= 5
    seen = set()
    for schedule in interleavings(counts):
        prepare()
        run(schedule)
        published = published_days(kind)
        assert "2026-11-26" not in published
        assert read_latest(kind) == published[-1], schedule
        seen.add(read_latest(kind))
    assert seen == {max("2026-11-24", other)}
