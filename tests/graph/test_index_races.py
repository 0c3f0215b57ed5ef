"""The article index never forks (transforms/graph/index_store.py,
docs/graph.md#the-article-index-append-only-and-versioned): two graph runs of different
days interleaved at every split point of their writes, renames and deletes, on a local
folder and on the fake object store; a crash between a version's commit and the swap of
CURRENT; a lost swap; --index_from with and without CURRENT; one race on a real Cloud
Storage server. After each, no index value names two articles across the versions on
CURRENT's chain and the published graph days, and every graph day names a version on
that chain."""

import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing import test_pipeline

from tests.helpers.fake_object_store import FakeObjectStore, patch_local_faults
from tests.helpers.index_runs import check_one_index, commit_version, graph_run, \
    publish_graph_day, start_run
from tests.helpers.publishing_days import DUE, NOW, clear, clock
from tests.helpers.turns import turns_on_operations
from transforms.graph import index_store
from transforms.publishing.files import SUCCESS
from transforms.publishing.protocol import CommitLost
from transforms.publishing.readers import published_manifest

SEED, RUN_A, RUN_B = ("20261126T000000Z-5eed0000", "20261127T010000Z-aaaaaaaa",
                      "20261127T010500Z-bbbbbbbb")
DAYS = {"seed": "2026-11-24", "A": "2026-11-25", "B": "2026-11-26"}
ARTICLES = {"seed": ["a0", "a1", "a2"], "A": ["a1", "x1", "x2"], "B": ["y1", "x1", "a0", "y2"]}
LOST = (index_store.IndexMovedError, CommitLost)


@pytest.fixture(params=["local", "fakeobj"])
def out(request, tmp_path, monkeypatch):
    FakeObjectStore.reset()
    if request.param == "local":
        patch_local_faults(monkeypatch)
        yield str(tmp_path / "out")
    else:
        yield "fakeobj://bucket/out"
    FakeObjectStore.inject(None)


def seeded(out):
    """An output folder whose index is at version 1, with its graph day."""
    graph_run(out, DAYS["seed"], SEED, ARTICLES["seed"], clock())


def version_folders(out):
    return index_store.published_versions(out)


def run_both(out, schedule, monkeypatch):
    turns = turns_on_operations(schedule, monkeypatch)
    runs = {"A": RUN_A, "B": RUN_B}
    return turns.play({name: lambda name=name: graph_run(
        out, DAYS[name], runs[name], ARTICLES[name], clock(), step=turns.step)
        for name in runs})


def operations_of_one_run(out):
    seeded(out)
    FakeObjectStore.inject(None)
    graph_run(out, DAYS["A"], RUN_A, ARTICLES["A"], clock())
    return FakeObjectStore.operations + 1


@pytest.mark.functions
def test_two_graph_runs_of_different_days_in_every_order_never_fork_the_index(
        out, monkeypatch):
    n = operations_of_one_run(out)
    assert n > 10
    endings = set()
    for first, second in (("A", "B"), ("B", "A")):
        for k in range(n + 1):
            schedule = [first] * k + [second] * (2 * n) + [first] * (2 * n)
            clear(out)
            FakeObjectStore.inject(None)
            seeded(out)
            with monkeypatch.context() as patch:
                outcome = run_both(out, schedule, patch)
            chain = check_one_index(out, DAYS.values())
            made = {name: v for name, v in outcome.items() if isinstance(v, int)}
            assert made, (schedule, outcome)
            assert all(v in chain for v in made.values()), (schedule, outcome, chain)
            for name, result in outcome.items():
                day_published = FileSystems.exists(f"{out}/cooccurrence/dt={DAYS[name]}/{SUCCESS}")
                if name in made:
                    assert day_published, (schedule, name)
                else:
                    assert isinstance(result, LOST), (schedule, name, result)
                    assert not day_published, (schedule, name)
            endings.add((tuple(sorted(made)), len(chain)))
    # Both ran one after the other (three versions on the chain), and each lost once.
    assert endings >= {(("A", "B"), 3), (("A",), 2), (("B",), 2)}


@pytest.mark.functions
def test_a_crash_between_commit_and_swap_leaves_an_orphan_skipped_and_swept(out):
    seeded(out)
    orphan = commit_version(out, RUN_A, start_run(out), ARTICLES["A"], clock(), swap=False)
    folder = index_store.version_dir(out, orphan["version"])
    files = [f"{folder}/{f['name']}" for f in published_manifest(folder)["file_sets"]["index"]["files"]]
    # The crash: version 2 is committed, CURRENT still names 1.
    assert index_store.read_current(out) == 1 and version_folders(out) == [1, 2]
    # The next run skips 2, extends 1 (the orphan is never read) and makes 3.
    base = start_run(out)
    assert (base["version"], base["next"]) == (1, 3)
    assert set(base["known"]) == set(ARTICLES["seed"])
    graph_run(out, DAYS["B"], RUN_B, ARTICLES["B"], clock())
    assert check_one_index(out, DAYS.values()) == [3, 1]
    # Its files go after the retention; its manifest and _SUCCESS stay, so 2 stays taken.
    assert index_store.sweep_orphans(out, 48, DUE - dt.timedelta(seconds=1)) == []
    assert index_store.sweep_orphans(out, 48, DUE) == files
    assert not any(FileSystems.exists(p) for p in files)
    assert index_store.sweep_orphans(out, 48, DUE) == []
    assert version_folders(out) == [1, 2, 3] and start_run(out)["next"] == 4


@pytest.mark.functions
def test_a_lost_swap_leaves_an_orphan_and_fails_the_run(out):
    seeded(out)
    base_a = start_run(out)
    index_a = commit_version(out, RUN_A, base_a, ARTICLES["A"], clock(), swap=False)
    base_b = start_run(out)            # B starts after A's commit, before A's swap
    assert (base_b["version"], base_b["next"]) == (1, 3)
    index_b = commit_version(out, RUN_B, base_b, ARTICLES["B"], clock(), swap=False)
    index_store.point_current(out, base_a, index_a["version"])
    with pytest.raises(index_store.IndexMovedError, match=(
            r"it extended version 1 and published version 3, but .*/article_index/CURRENT "
            r"now names 2; another run extended it first\. Version 3 is an orphan")):
        index_store.point_current(out, base_b, index_b["version"])
    # A retried swap of the winner finds its own version and goes on.
    index_store.point_current(out, base_a, index_a["version"])
    publish_graph_day(out, DAYS["A"], RUN_A, index_a, clock())
    assert check_one_index(out, DAYS.values()) == [2, 1]
    assert version_folders(out) == [1, 2, 3] and start_run(out)["next"] == 4
    # Had B's graph day been published on version 3, the check would catch it.
    publish_graph_day(out, DAYS["B"], RUN_B, index_b, clock())
    with pytest.raises(AssertionError):
        check_one_index(out, DAYS.values())


@pytest.mark.functions
def test_a_run_whose_version_another_run_made_first_publishes_nothing_of_it(out):
    seeded(out)
    base = start_run(out)
    commit_version(out, RUN_A, base, ARTICLES["A"], clock(), swap=False)
    with pytest.raises(CommitLost, match=r"/article_index/v=000002 was moved by another run"):
        commit_version(out, RUN_B, dict(base, generation=base["generation"]), ARTICLES["B"],
                       clock(), swap=False)
    folder = index_store.version_dir(out, 2)
    assert published_manifest(folder)["run_id"] == RUN_A
    assert not any(RUN_B in m.path for m in FileSystems.match([f"{folder}/**"])[0].metadata_list)


@pytest.mark.functions
def test_index_from_only_seeds_a_folder_without_current(out, tmp_path):
    source = str(tmp_path / "elsewhere")
    graph_run(source, DAYS["seed"], SEED, ["s1", "s2"], clock())
    seed_from = index_store.version_dir(source, 1)
    # A folder without CURRENT: the new version starts from the seed's files, records
    # where they came from and has no parent.
    base = start_run(out, index_from=seed_from)
    assert (base["version"], base["next"], base["seeded_from"]) == (None, 1, seed_from)
    index = commit_version(out, RUN_A, base, ARTICLES["A"], clock())
    assert index["mapping"] == {"s1": 1, "s2": 2, "a1": 3, "x1": 4, "x2": 5}
    manifest = published_manifest(index_store.version_dir(out, 1))
    assert (manifest["parent"], manifest["seeded_from"]) == (None, seed_from)
    # Anywhere else the run is refused, naming CURRENT and the flag.
    with pytest.raises(index_store.IndexSeedRefused, match=(
            rf"^--index_from={seed_from} only seeds an output folder that has no article "
            rf"index yet, but {out}/article_index/CURRENT names version 1\.")):
        start_run(out, index_from=seed_from)
    assert version_folders(out) == [1]


@pytest.mark.composites
def test_read_article_index_refuses_index_from_at_run_time(tmp_path):
    out = str(tmp_path / "out")
    graph_run(out, DAYS["seed"], SEED, ARTICLES["seed"], clock())
    step = index_store.ReadArticleIndex(out, index_store.version_dir(out, 1))
    with pytest.raises(Exception, match="only seeds an output folder that has no article index"):
        with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
            _ = p | step


@pytest.mark.functions
def test_two_runs_on_cloud_storage_one_makes_the_version(gcs_server):
    """Create-if-absent and the swap on a real Cloud Storage server (loopback)."""
    out = f"{gcs_server.bucket('index-races')}/out"
    seeded(out)
    base_a, base_b = start_run(out), start_run(out)
    index_a = commit_version(out, RUN_A, base_a, ARTICLES["A"], clock(), swap=False)
    with pytest.raises(CommitLost, match=r"/article_index/v=000002 was moved by another run"):
        commit_version(out, RUN_B, base_b, ARTICLES["B"], clock(), swap=False)
    base_c = start_run(out)           # after A's commit, before its swap: makes 3
    index_c = commit_version(out, "20261127T020000Z-cccccccc", base_c, ["z1"], clock(),
                             swap=False)
    index_store.point_current(out, base_a, index_a["version"])
    with pytest.raises(index_store.IndexMovedError, match="Version 3 is an orphan"):
        index_store.point_current(out, base_c, index_c["version"])
    publish_graph_day(out, DAYS["A"], RUN_A, index_a, clock())
    assert check_one_index(out, DAYS.values()) == [2, 1]
