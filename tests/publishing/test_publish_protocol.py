"""The publishing protocol (transforms/publishing/protocol.py): pieces streamed into the
day folder under run-unique names and cut by bytes, then one commit (the run manifest,
_SUCCESS moved by compare-and-swap from what the run read at its start, manifest.json,
the retention sweep), on a local folder and on a fake object store
(tests/helpers/fake_object_store.py: flat names, no directories, rename = copy + delete).
The tests' clock (publishing_days.NOW) is set after their run ids start; the replaced
run's files stay until the retention is over (publishing_days.DUE).

Crash tests: for every k up to the number of writes, renames and deletes a publish
makes, a crash at the k-th leaves a reader seeing the old day or the new day complete,
and a retry of the step (same run, same base) ends with exactly the new day published
and, after the retention, nothing of the old run left."""

import datetime as dt
import google_crc32c
import json
import os
import threading

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.helpers.fake_object_store import Crash, FakeObjectStore
from tests.helpers.publishing_days import DUE, NOW, after_retention, clear, clock, edges, \
    expected_view, lines, listing, published_names, raw, reader_view, run_names, write_run
from transforms.publishing import writers
from transforms.publishing.files import MANIFEST, SUCCESS
from transforms.publishing.protocol import PublishFileSets, new_run_id, publish_day, read_base
from transforms.publishing.store import CAS_PREFIX
from transforms.publishing.readers import manifest_files, published_files, published_manifest, \
    read_file_set, read_jsonl_file, read_published
from transforms.publishing.tfrecord import decode_examples, read_tfrecord_file
from transforms.publishing.writers import FileRecord, piece_file_name, publish_tree, \
    write_piece

RUNNER = "FnApiRunner"
OLD, NEW = "20261126T010000Z-01d01d00", "20261127T010000Z-4e3e3e30"


# ---------------------------------------------------------------------- helpers

def publish_run(day, run_id, version, base=None, **retention):
    return publish_day(day, run_id, write_run(day, run_id, version), {"version": version},
                       file_sets=("edges", "quarantine", "empty"), base=base,
                       **dict({"clock": clock()}, **retention))


# Tier 1 unless a test says otherwise (the pipelines are tier 2, a whole run tier 3).
# ---------------------------------------------------------------------- names and run ids

@pytest.mark.functions
def test_piece_file_names_and_run_ids():
    assert piece_file_name("edges", "R", 3, 0, ".tfrecord.gz") == "edges-R-00003-000.tfrecord.gz"
    assert piece_file_name("quarantine", "R", "0a1b", 12, ".jsonl.gz") == \
        "quarantine-R-0a1b-012.jsonl.gz"
    with pytest.raises(ValueError, match="must be a non-empty name without '/'"):
        piece_file_name("x", "R", "a/b", 0, ".parquet")
    a, b = new_run_id(), new_run_id()
    assert a != b and len(a) == len("20261126T010203Z-0123abcd") and "/" not in a


@pytest.mark.functions
def test_unknown_format_and_bad_target_are_refused():
    with pytest.raises(ValueError, match="^unknown file format 'csv'"):
        PublishFileSets("/tmp/x", {}, fmt="csv")
    with pytest.raises(ValueError, match=r"^--target_shard_mb=0 must be > 0$"):
        PublishFileSets("/tmp/x", {}, target_shard_mb=0)


# ---------------------------------------------------------------------- writing in pieces

@pytest.mark.functions
@pytest.mark.parametrize("fmt", ["tfrecord", "parquet", "jsonl"])
def test_one_file_per_chunk_with_a_tiny_target(tmp_path, fmt):
    data = lines("v", 100) if fmt == "jsonl" else edges("v", 100)
    records = list(write_piece(str(tmp_path), "R", fmt, "s", 7, data, 1, chunk_rows=10))
    suffix = writers.FORMATS[fmt]
    assert [r.name for r in records] == [f"s-R-00007-{p:03d}{suffix}" for p in range(10)]
    assert [r.rows for r in records] == [10] * 10
    assert [r.size_bytes for r in records] == \
        [os.path.getsize(tmp_path / r.name) for r in records]
    assert read_back(tmp_path, records, fmt) == (data if fmt == "jsonl" else data.to_pylist())


def read_back(folder, records, fmt):
    out = []
    for r in records:
        path = os.path.join(folder, r.name)
        if fmt == "jsonl":
            out += read_jsonl_file(path)
        elif fmt == "parquet":
            out += pq.read_table(path).to_pylist()
        else:
            out += [{k: v[0] for k, v in row.items()}
                    for row in decode_examples(read_tfrecord_file(path)).to_pylist()]
    return out


@pytest.mark.functions
@pytest.mark.parametrize("fmt", ["tfrecord", "parquet", "jsonl"])
def test_files_are_cut_when_they_reach_the_target_size(tmp_path, fmt):
    data = lines("v", 3000) if fmt == "jsonl" else edges("v", 3000)
    target = int(0.002 * (1 << 20))
    records = list(write_piece(str(tmp_path), "R", fmt, "s", 0, data, target, chunk_rows=100))
    sizes = [os.path.getsize(tmp_path / r.name) for r in records]
    assert len(records) > 2
    assert all(size >= target for size in sizes[:-1]), sizes
    # Cut at the first chunk boundary past the target: no file holds a chunk too many.
    per_chunk = max(sizes) / (max(r.rows for r in records) / 100)
    assert all(size < target + 2 * per_chunk for size in sizes), sizes
    assert all(r.rows % 100 == 0 for r in records[:-1])
    assert sum(r.rows for r in records) == 3000
    assert read_back(tmp_path, records, fmt) == (data if fmt == "jsonl" else data.to_pylist())


@pytest.mark.functions
def test_no_whole_file_is_encoded_at_once(tmp_path, monkeypatch):
    """A piece of 1,000 rows written with chunks of 64 is encoded 64 rows at a time, into
    one file, and Parquet row groups hold 64 rows."""
    calls = []
    real = writers.encode_examples

    def counting_encode(batch):
        calls.append(batch.num_rows)
        return real(batch)
    monkeypatch.setattr(writers, "encode_examples", counting_encode)
    records = list(write_piece(str(tmp_path), "R", "tfrecord", "e", 0, edges("v", 1000),
                               1 << 30, chunk_rows=64))
    assert len(records) == 1 and records[0].rows == 1000
    assert calls == [64] * 15 + [40]
    records = list(write_piece(str(tmp_path), "R", "parquet", "p", 0, edges("v", 1000),
                               1 << 30, chunk_rows=64))
    meta = pq.ParquetFile(tmp_path / records[0].name).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [64] * 15 + [40]


@pytest.mark.functions
def test_a_piece_without_rows_writes_no_file(tmp_path):
    assert list(write_piece(str(tmp_path), "R", "parquet", "p", 0, edges("v", 0), 1)) == []
    assert list(write_piece(str(tmp_path), "R", "jsonl", "q", "k", [], 1)) == []
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- the publish step

@pytest.mark.functions
def test_manifest_lists_every_file_with_rows_and_bytes(day):
    manifest = publish_run(day, NEW, "new")
    assert raw(f"{day}/{SUCCESS}") == f"{NEW}\n".encode()
    assert json.loads(raw(f"{day}/{MANIFEST}")) == manifest
    assert published_manifest(day) == manifest
    assert manifest["run_id"] == NEW and manifest["version"] == "new"
    sets = manifest["file_sets"]
    assert sorted(sets) == ["edges", "empty", "quarantine"]
    assert sets["edges"]["rows"] == 65 and sets["quarantine"]["rows"] == 30
    assert sets["edges"]["feature_spec"] == {
        "src_article_id": {"kind": "bytes_list", "shape": "[1]"},
        "dst_article_id": {"kind": "bytes_list", "shape": "[1]"},
        "count": {"kind": "int64_list", "shape": "[1]"}}
    files = sets["edges"]["files"]
    assert [f["name"] for f in files] == sorted(f["name"] for f in files)
    assert len(files) > 2 and all(f["name"].startswith(f"edges-{NEW}-0000") for f in files)
    assert sum(f["rows"] for f in files) == 65
    for f in files + sets["quarantine"]["files"]:
        assert len(raw(f"{day}/{f['name']}")) == f["size_bytes"]
    assert published_files(day, "quarantine") == \
        [f"{day}/quarantine-{NEW}-a1b2c3d4e5f60718-000.jsonl.gz"]
    assert reader_view(day) == expected_view("new")
    assert listing(day) == published_names(day, NEW)


@pytest.mark.functions
def test_readers_need_success(day):
    with pytest.raises(FileNotFoundError, match=f"^{day} has no _SUCCESS: no day is published"):
        published_files(day, "edges")
    write_run(day, NEW, "new")   # files without the publish step: not a day
    with pytest.raises(FileNotFoundError, match="has no _SUCCESS"):
        read_file_set(day, "edges")
    publish_run(day, NEW, "new")
    with pytest.raises(KeyError, match="has no file set 'nodes'"):
        published_files(day, "nodes")


@pytest.mark.functions
def test_a_new_run_replaces_the_old_day_whole_and_its_files_go_after_the_retention(day):
    publish_run(day, OLD, "old")
    assert reader_view(day) == expected_view("old")
    old_manifest = published_manifest(day)
    old_names = published_names(day, OLD)
    publish_run(day, NEW, "new")
    assert reader_view(day) == expected_view("new")
    manifest = published_manifest(day)
    assert (manifest["replaces"], manifest["committed_at"]) == (OLD, "2026-11-27T03:00:00Z")
    # A reader that listed the old day's files before reads every one of them.
    assert listing(day) == sorted(set(published_names(day, NEW)) | set(old_names))
    assert [r["src_article_id"][0] for path in manifest_files(day, old_manifest, "edges")
            for r in decode_examples(read_tfrecord_file(path)).to_pylist()] == \
        [f"old-s{i}".encode() for i in range(65)]
    assert after_retention(day, DUE - dt.timedelta(seconds=1)) == []
    assert after_retention(day) == sorted(n for n in old_names if OLD in n)
    assert listing(day) == published_names(day, NEW)
    assert not any(OLD in name for name in listing(day))


@pytest.mark.functions
def test_a_run_whose_listed_file_is_gone_or_changed_commits_nothing(day):
    publish_run(day, OLD, "old")
    records = write_run(day, NEW, "new")
    gone, changed = records[0].name, records[-1].name
    FileSystems.delete([f"{day}/{gone}"])
    with FileSystems.create(f"{day}/{changed}", compression_type="uncompressed") as handle:
        handle.write(b"other bytes")
    with pytest.raises(FileNotFoundError, match=(
            f"^{day}: run {NEW} lists files that are not there as written: {gone} "
            rf"\(missing\), {changed} \(11 bytes, listed {records[-1].size_bytes}\)$")):
        publish_day(day, NEW, records, {"version": "new"},
                    file_sets=("edges", "quarantine", "empty"))
    assert reader_view(day) == expected_view("old")
    assert not FileSystems.exists(f"{day}/manifest-{NEW}.json")


@pytest.mark.functions
def test_the_same_step_twice_gives_the_same_folder(day):
    publish_run(day, OLD, "old")
    records = write_run(day, NEW, "new")
    publish_day(day, NEW, records, {"version": "new"}, file_sets=("edges", "quarantine", "empty"),
                clock=clock())
    first = {name: content(day, name) for name in listing(day)}
    # A retried bundle rewrites the same names with the same records, then the step again.
    again = write_run(day, NEW, "new")
    assert [r._replace(size_bytes=0, crc32c="") for r in again] == \
        [r._replace(size_bytes=0, crc32c="") for r in records]
    publish_day(day, NEW, records + again, {"version": "new"},
                file_sets=("edges", "quarantine", "empty"), clock=clock())
    assert {name: content(day, name) for name in listing(day)} == first
    # The manifest lists each file as stored: the rewrite's sizes, not the first write's.
    listed = {f["name"]: f["size_bytes"]
              for s in published_manifest(day)["file_sets"].values() for f in s["files"]}
    assert listed == {name: len(raw(f"{day}/{name}")) for name in listed}


def content(day, name):
    """A file's records (TFRecords: the decoded examples, as tfx-bsl serialises an
    Example's features in no fixed order), a manifest without the sizes and checksums of
    its files (which follow those bytes), or bytes."""
    if name.endswith(".tfrecord.gz"):
        return decode_examples(read_tfrecord_file(f"{day}/{name}")).to_pylist()
    if name.startswith("manifest"):
        manifest = json.loads(raw(f"{day}/{name}"))
        for entry in manifest["file_sets"].values():
            for f in entry["files"]:
                f.pop("size_bytes"), f.pop("crc32c", None)
        return manifest
    return raw(f"{day}/{name}")


@pytest.mark.functions
def test_two_concurrent_runs_of_the_same_step_and_a_reader(day):
    publish_run(day, OLD, "old")
    records = write_run(day, NEW, "new")
    start, done, seen, errors = threading.Barrier(3), threading.Event(), [], []

    def run_step():
        try:
            start.wait()
            publish_day(day, NEW, records, {"version": "new"},
                        file_sets=("edges", "quarantine", "empty"), clock=clock())
        except Exception as err:   # reported below
            errors.append(err)

    def read_loop():
        start.wait()
        while not done.is_set():
            seen.append(reader_view(day))
    threads = [threading.Thread(target=run_step) for _ in range(2)]
    reader = threading.Thread(target=read_loop)
    for t in threads + [reader]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    assert seen and all(view in (expected_view("old"), expected_view("new")) for view in seen)
    assert reader_view(day) == expected_view("new")
    assert set(listing(day)) - set(published_names(day, NEW)) == \
        {n for n in listing(day) if OLD in n}
    after_retention(day)
    assert listing(day) == published_names(day, NEW)


def count_operations(day):
    """Writes, renames and deletes of one whole publish (data files included) over an
    old day, with no retention (so that its sweep deletes the old run's files too)."""
    publish_run(day, OLD, "old")
    FakeObjectStore.inject(None)
    publish_run(day, NEW, "new", keep_hours=0)
    return FakeObjectStore.operations


@pytest.mark.functions
def test_a_crash_anywhere_leaves_one_whole_day_and_a_rerun_finishes_it(day):
    total = count_operations(day)
    kinds = {kind for kind, _ in FakeObjectStore.log}
    assert kinds == ({"write", "rename", "delete"} if not day.startswith("fakeobj")
                     else {"write", "delete"})
    for k in range(1, total + 1):
        clear(day)
        FakeObjectStore.inject(None)
        publish_run(day, OLD, "old")
        base = read_base(day)      # what the run read at its start
        FakeObjectStore.inject(k)
        with pytest.raises(Crash):
            publish_run(day, NEW, "new", base=base, keep_hours=0)
        FakeObjectStore.inject(None)
        view = reader_view(day)
        assert view in (expected_view("old"), expected_view("new")), k
        # The retried step: same run, same base. Its sweep also takes a temporary file
        # of this very run, left when the crash came between its write and its rename.
        publish_run(day, NEW, "new", base=base, keep_hours=0)
        assert reader_view(day) == expected_view("new"), k
        assert listing(day) == published_names(day, NEW), k


@pytest.mark.functions
def test_after_a_crash_a_fresh_run_also_ends_with_one_whole_day(day):
    publish_run(day, OLD, "old")
    FakeObjectStore.inject(5)
    with pytest.raises(Crash):
        publish_run(day, NEW, "new")
    FakeObjectStore.inject(None)
    third = "20261127T020000Z-7a1cd000"
    publish_run(day, third, "third")
    assert reader_view(day) == expected_view("third")
    # The old run, which the third replaced, stays for the retention after that commit;
    # the crashed run's pieces for the retention after its start (an hour earlier).
    crashed, old = run_names(day, NEW), run_names(day, OLD)
    assert crashed and old
    assert set(listing(day)) == set(published_names(day, third)) | set(crashed) | set(old)
    assert after_retention(day, NOW - dt.timedelta(hours=2)) == []
    assert after_retention(day, DUE - dt.timedelta(hours=2)) == crashed
    assert after_retention(day, DUE) == old
    assert listing(day) == published_names(day, third)


@pytest.mark.functions
def test_a_reader_whose_files_vanish_starts_again_from_success(day):
    publish_run(day, OLD, "old")
    calls = []

    def read_one(path):
        if not calls:
            # With no retention, the replaced files go with the commit.
            publish_run(day, NEW, "new", keep_hours=0)
        calls.append(path)
        return read_tfrecord_file(path)
    got = read_published(day, "edges", read_one)
    assert calls[0].startswith(f"{day}/edges-{OLD}") and calls[-1].startswith(f"{day}/edges-{NEW}")
    rows = [r for records in got for r in decode_examples(records).to_pylist()]
    assert sorted(r["src_article_id"][0] for r in rows) == \
        sorted(f"new-s{i}".encode() for i in range(65))


# ---------------------------------------------------------------------- directory trees

@pytest.mark.functions
def test_publish_tree_copies_a_saved_model_under_a_run_prefix(day, tmp_path):
    model = tmp_path / "saved_model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(b"x" * 3000)
    (model / "assets").mkdir()
    publish_day(day, OLD, publish_tree(str(model), day, "model", OLD), {}, clock=clock())
    records = publish_tree(str(model), day, "model", NEW)
    crc = {data: f"{google_crc32c.value(data):08x}" for data in (b"graph", b"x" * 3000, b"index")}
    assert records == [
        FileRecord("model", f"model-{NEW}/saved_model.pb", 0, 5, {}, crc[b"graph"]),
        FileRecord("model", f"model-{NEW}/variables/variables.data-00000-of-00001", 0, 3000, {},
                   crc[b"x" * 3000]),
        FileRecord("model", f"model-{NEW}/variables/variables.index", 0, 5, {}, crc[b"index"])]
    manifest = publish_day(day, NEW, records, {}, clock=clock())
    assert [f["name"] for f in manifest["file_sets"]["model"]["files"]] == \
        [r.name for r in records]
    assert len(after_retention(day)) == 4   # the old tree's three files and its manifest
    assert published_files(day, "model") == [f"{day}/{r.name}" for r in records]
    assert raw(f"{day}/model-{NEW}/variables/variables.index") == b"index"
    assert listing(day) == published_names(day, NEW)
    if not day.startswith("fakeobj"):
        assert sorted(n for n in os.listdir(day) if not n.startswith(CAS_PREFIX)) == \
            sorted([f"model-{NEW}", f"manifest-{NEW}.json", MANIFEST, SUCCESS])


# ---------------------------------------------------------------------- under a pipeline

GATE = {"rows_read": 10, "rows_valid": 7, "rows_quarantined": 1, "duplicates_dropped": 1,
        "out_of_span": 1, "blessed": True, "overridden": False, "anomalies": []}


@pytest.mark.composites
@pytest.mark.parametrize("where", ["local", "fakeobj"])
def test_publish_file_sets_under_a_pipeline(tmp_path, where):
    FakeObjectStore.reset()
    final = str(tmp_path / "validated" / "dt=2026-11-26") if where == "local" else \
        "fakeobj://bucket/validated/dt=2026-11-26"
    table = edges("v", 50)
    step = PublishFileSets(final, {"run_date": "2026-11-26"}, fmt="parquet",
                           target_shard_mb=0.001, file_sets=("part",),
                           extra={"dedup_shards_resolved": None}, chunk_rows=10)
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        gate = p | "Gate" >> beam.Create([GATE])
        step._gate = gate
        step._extra = {"dedup_shards_resolved": p | "Resolved" >> beam.Create([3])}
        out = (p | beam.Create([("part", 0, table.slice(0, 20)), ("part", 2, table.slice(20))])
               | step)
        assert_that(out | beam.Map(lambda m: (m["run_id"], m["run_date"], m["validation"],
                                              m["dedup_shards_resolved"],
                                              m["file_sets"]["part"]["rows"])),
                    equal_to([(step.run_id, "2026-11-26",
                               {k: v for k, v in GATE.items() if k != "anomalies"}, 3, 50)]))
    paths = published_files(final, "part")
    assert len(paths) > 2 and all(f"part-{step.run_id}-0000" in p for p in paths)
    rows = [r for path in paths for r in pq.read_table(FileSystems.open(path, compression_type="uncompressed")).to_pylist()]
    assert rows == table.to_pylist()


@pytest.mark.composites
def test_an_empty_gate_writes_and_publishes_nothing(tmp_path):
    final = str(tmp_path / "dt=2026-11-26")
    publish_day(final, OLD, write_piece(final, OLD, "tfrecord", "edges", 0, edges("old", 5),
                                        1 << 20), {})
    before = listing(final)
    with pytest.raises(Exception, match="no blessed validation summary"):
        with test_pipeline.TestPipeline(runner=RUNNER) as p:
            _ = (p | beam.Create([("edges", 0, edges("new", 5))])
                 | PublishFileSets(final, {}, gate=p | "Gate" >> beam.Create([])))
    assert listing(final) == before
