"""Two different runs of one day at once (docs/publishing.md#the-publish-step): each run
reads what it replaces (the base), writes its pieces and commits; their writes, renames
and deletes are interleaved in every order a split point gives, on a local folder and
on the fake object store. Every interleaving ends with the day complete as one run
published it, the replaced runs' files kept for the retention and nothing else after
it; a run that loses its commit raises CommitLost naming the winner and leaves nothing
of its own."""

import json

import pytest

from tests.helpers.fake_object_store import FakeObjectStore
from transforms.publishing.files import MANIFEST
from transforms.publishing.protocol import CommitLost, check_claim, publish_day, read_base
from transforms.publishing.readers import published_manifest
from tests.helpers.turns import turns_on_operations
from tests.helpers.publishing_days import after_retention, clear, clock, expected_view, \
    listing, published_names, raw, reader_view, run_names, write_run

pytestmark = pytest.mark.functions

OLD = "20261126T010000Z-01d01d00"
RUNS = {"A": "20261127T010000Z-aaaaaaaa", "B": "20261127T010500Z-bbbbbbbb"}


def run_both(day, schedule, monkeypatch):
    """Runs A and B of the day in two threads under `schedule`; returns each run's
    outcome: 'committed' or the exception raised."""
    turns = turns_on_operations(schedule, monkeypatch)

    def run(name):
        run_id = RUNS[name]
        turns.step()                     # the run starts: it reads what it replaces
        base = read_base(day)
        records = write_run(day, run_id, name)
        publish_day(day, run_id, records, {"version": name},
                    file_sets=("edges", "quarantine", "empty"), base=base,
                    clock=clock())
        return "committed"

    return turns.play({name: lambda name=name: run(name) for name in RUNS})


def operations_of_one_run(day):
    """Writes, renames and deletes of one run over an old day, + its start."""
    publish_day(day, OLD, write_run(day, OLD, "old"), {"version": "old"},
                file_sets=("edges", "quarantine", "empty"), clock=clock())
    FakeObjectStore.inject(None)
    publish_day(day, RUNS["A"], write_run(day, RUNS["A"], "A"), {"version": "A"},
                file_sets=("edges", "quarantine", "empty"), clock=clock())
    return FakeObjectStore.operations + 1


def schedules(n):
    """First run takes k turns, the other all of its own, then the first the rest; for
    every k and both orders (a run that has ended gives up the turns left to it)."""
    for first, second in (("A", "B"), ("B", "A")):
        for k in range(n + 1):
            yield [first] * k + [second] * (2 * n) + [first] * (2 * n)


def test_two_runs_interleaved_anywhere_leave_the_day_as_one_run_published_it(
        day, tmp_path, monkeypatch):
    n = operations_of_one_run(day)
    assert n > 10
    outcomes = set()
    for schedule in schedules(n):
        clear(day)
        FakeObjectStore.inject(None)
        publish_day(day, OLD, write_run(day, OLD, "old"), {"version": "old"},
                    file_sets=("edges", "quarantine", "empty"), clock=clock())
        with monkeypatch.context() as patch:
            outcome = run_both(day, schedule, patch)
        winner = published_manifest(day)["version"]
        assert winner in RUNS, schedule
        assert reader_view(day) == expected_view(winner), schedule
        # The winner's files and the replaced runs' (the old run's, and the earlier
        # run's when both committed) until the retention is over; a loser's went with
        # its lost commit.
        loser = "B" if winner == "A" else "A"
        replaced = [OLD] + ([RUNS[loser]] if outcome[loser] == "committed" else [])
        assert listing(day) == sorted(set(published_names(day, RUNS[winner])).union(
            *(run_names(day, run) for run in replaced))), schedule
        assert all(run_names(day, run) for run in replaced), schedule
        after_retention(day)
        assert listing(day) == published_names(day, RUNS[winner]), schedule
        with_manifest = json.loads(raw(f"{day}/{MANIFEST}"))
        assert with_manifest == published_manifest(day), schedule
        assert outcome[winner] == "committed", schedule
        if outcome[loser] != "committed":
            assert isinstance(outcome[loser], CommitLost)
            assert str(outcome[loser]).startswith(
                f"{day} was moved by another run while this run ({RUNS[loser]}) ran: it "
                f"now names {RUNS[winner]}.")
        outcomes.add((winner, "both" if outcome[loser] == "committed" else "one"))
    # Both orders happened, and both kinds of ending: the later run replacing the
    # earlier, and the later run losing.
    assert outcomes == {("A", "both"), ("B", "both"), ("A", "one"), ("B", "one")}



def test_two_runs_on_cloud_storage_one_replaces_or_one_loses(gcs_server):
    """The commit on a real Cloud Storage server (loopback): runs A and B read the same
    base; A commits, then B's commit loses; a run C that starts after A's commit
    replaces it, and A's files go after the retention."""
    day = f"{gcs_server.bucket('two-runs')}/out/cooccurrence/dt=2026-11-26"
    publish_day(day, OLD, write_run(day, OLD, "old"), {"version": "old"},
                file_sets=("edges", "quarantine", "empty"), clock=clock())
    base = read_base(day)
    records = {name: write_run(day, RUNS[name], name) for name in RUNS}
    publish_day(day, RUNS["A"], records["A"], {"version": "A"},
                file_sets=("edges", "quarantine", "empty"), base=base,
                    clock=clock())
    with pytest.raises(CommitLost, match=rf"now names {RUNS['A']}\. This run published "
                                         "nothing there and removed its own files"):
        publish_day(day, RUNS["B"], records["B"], {"version": "B"},
                    file_sets=("edges", "quarantine", "empty"), base=base,
                    clock=clock())
    assert reader_view(day) == expected_view("A")
    assert set(listing(day)) - set(published_names(day, RUNS["A"])) == set(run_names(day, OLD))
    late = "20261127T020000Z-cccccccc"
    publish_day(day, late, write_run(day, late, "C"), {"version": "C"},
                file_sets=("edges", "quarantine", "empty"), base=read_base(day), clock=clock())
    assert reader_view(day) == expected_view("C")
    assert set(listing(day)) - set(published_names(day, late)) == \
        set(run_names(day, RUNS["A"])) | set(run_names(day, OLD))
    after_retention(day)
    assert listing(day) == published_names(day, late)
    assert json.loads(raw(f"{day}/{MANIFEST}")) == published_manifest(day)



def test_a_claim_holds_while_its_folder_names_the_run(tmp_path):
    folder = str(tmp_path / "quarantine" / "dt=2026-11-26")
    with pytest.raises(CommitLost, match=rf"^{folder} was published again by run \(none: "
                                         r"withdrawn\) after this run \(R1\) published it"):
        check_claim(folder, "R1")
    publish_day(folder, "R1", write_run(folder, "R1", "one"), {})
    check_claim(folder, "R1")
    publish_day(folder, "R2", write_run(folder, "R2", "two"), {})
    with pytest.raises(CommitLost, match=(
            rf"^{folder} was published again by run R2 after this run \(R1\) published it: "
            "another run of this day started later and took the day over. This run stops "
            "before its validation files and publishes nothing more; let the other run "
            "finish.$")):
        check_claim(folder, "R1")
