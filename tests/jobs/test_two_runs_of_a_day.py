"""Tier 3: a validate_events run of one day while another run of that day commits
(docs/publishing.md#one-claim-per-run). The other run is played by the test: it
publishes a kind of the day at the moment the job is about to commit it, or right
after the job committed its claim. The job's own FileSystems.create is watched to pick
that moment; everything else is the real job."""

import os

import pytest
from apache_beam.io.filesystems import FileSystems

from beam_jobs import validate_events
from tests.helpers.jobs import LOCAL, RUN_DATE, write_day
from tests.helpers.publishing_days import listing
from transforms.publishing.protocol import publish_day
from transforms.publishing.readers import published_manifest, read_run_id
from transforms.publishing.writers import write_piece

pytestmark = pytest.mark.jobs

OTHER = "20261126T235959Z-07e70000"


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_runs")
    write_day(root / "events", 3000, seed=11)
    return str(root / "events")


def publish_other(folder, file_set):
    """The other run's commit of one kind: one file, its manifest, _SUCCESS."""
    records = list(write_piece(folder, OTHER, "jsonl", file_set, "k", ['{"other": 1}'], 1 << 20))
    publish_day(folder, OTHER, records, {"run_date": RUN_DATE})


def run_with_other(monkeypatch, out, events, when):
    """Runs the job; `when(path)` -> (folder, file_set) of the other run's commit, made
    right before the job creates `path`, or None."""
    create, done = FileSystems.create, []

    def watched(path, *args, **kwargs):
        other = None if done else when(path)
        if other:
            done.append(other)
            publish_other(*other)
        return create(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "create", staticmethod(watched))
    with pytest.raises(Exception) as failed:
        validate_events.run(LOCAL + [f"--events={events}", f"--run_date={RUN_DATE}",
                                     f"--output_dir={out}"])
    assert done, "the other run never committed"
    return str(failed.value)


def run_manifest_in(folder, path):
    """Whether `path` is the job's run manifest of `folder` (written through a temporary
    _tmp-<run>-<id>-manifest-<run>.json, then renamed): its commit comes next."""
    return path.startswith(f"{folder}/") and "-manifest-" in path.rsplit("/", 1)[1]


def test_a_run_that_loses_its_claim_publishes_nothing(tmp_path, monkeypatch, events):
    out = str(tmp_path / "out")
    quarantine = f"{out}/quarantine/dt={RUN_DATE}"
    message = run_with_other(monkeypatch, out, events, lambda path: (
        (quarantine, "quarantine") if run_manifest_in(quarantine, path) else None))
    assert f"{quarantine} was moved by another run while this run (" in message
    assert f"it now names {OTHER}. This run published nothing there and removed its own " \
           "files. Let the other run finish, then run this day again" in message
    # The other run's quarantine, whole; nothing of this run anywhere.
    assert read_run_id(quarantine) == OTHER
    listed = [f["name"] for f in published_manifest(quarantine)["file_sets"]["quarantine"]["files"]]
    assert listing(quarantine) == sorted(listed + [f"manifest-{OTHER}.json", "manifest.json",
                                                    "_SUCCESS"])
    assert listing(f"{out}/validated/dt={RUN_DATE}") == []
    assert listing(f"{out}/validation/dt={RUN_DATE}") == []


def test_a_claim_taken_over_before_the_gate_stops_the_run(tmp_path, monkeypatch, events):
    out = str(tmp_path / "out")
    quarantine = f"{out}/quarantine/dt={RUN_DATE}"
    # The job commits its quarantine, then writes manifest.json there: the other run
    # commits the quarantine again right then.
    message = run_with_other(monkeypatch, out, events, lambda path: (
        (quarantine, "quarantine")
        if path.startswith(f"{quarantine}/") and path.endswith("-manifest.json") else None))
    assert f"{quarantine} was published again by run {OTHER} after this run (" in message
    assert "This run stops before its validation files and publishes nothing more" in message
    assert read_run_id(quarantine) == OTHER
    assert listing(f"{out}/validation/dt={RUN_DATE}") == []
    assert listing(f"{out}/validated/dt={RUN_DATE}") == []


def test_a_run_that_wins_its_claim_and_loses_a_later_commit_says_whose_is_which(
        tmp_path, monkeypatch, events):
    out = str(tmp_path / "out")
    validated = f"{out}/validated/dt={RUN_DATE}"
    message = run_with_other(monkeypatch, out, events, lambda path: (
        (validated, "part") if run_manifest_in(validated, path) else None))
    quarantine = f"{out}/quarantine/dt={RUN_DATE}"
    ours = read_run_id(quarantine)
    assert ours != OTHER
    assert f"This run's earlier commits stay published: quarantine/dt={RUN_DATE} (run " \
           f"{ours}); only {validated} is the other run's." in message
    assert read_run_id(validated) == OTHER
    # This run's validated pieces are gone; the other run's day is whole.
    assert not any(ours in name for name in listing(validated))
    assert published_manifest(validated)["run_id"] == OTHER
    assert os.path.exists(f"{out}/validation/dt={RUN_DATE}/summary.json")
