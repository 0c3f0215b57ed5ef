"""A small published day for the publishing tests: a run writes edges (TFRecords, cut
into several files) and quarantine lines (JSON lines) of one version; what a reader
trusting _SUCCESS sees; the folder's files. Used by tests/publishing/."""

import datetime as dt
import json
import os

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from tests.helpers.fake_object_store import FakeObjectStore
from transforms.publishing.files import MANIFEST, SUCCESS
from transforms.publishing.readers import manifest_files, published_manifest, read_jsonl_file
from transforms.publishing.retention import DEFAULT_KEEP_HOURS, sweep
from transforms.publishing.store import CAS_PREFIX
from transforms.publishing.tfrecord import decode_examples, read_tfrecord_file
from transforms.publishing.writers import write_piece


def edges(version: str, n: int) -> pa.Table:
    return pa.table({"src_article_id": pa.array([f"{version}-s{i}".encode() for i in range(n)]),
                     "dst_article_id": pa.array([f"d{i % 7}".encode() for i in range(n)]),
                     "count": pa.array(list(range(n)), pa.int64())})


def lines(version: str, n: int):
    return [json.dumps({"version": version, "i": i}) for i in range(n)]


def write_run(day, run_id, version):
    """A run's data files: two edge pieces cut into several files, one JSON-lines piece."""
    records = []
    for key, (lo, n) in enumerate(((0, 40), (40, 25))):
        table = edges(version, 65).slice(lo, n)
        records += write_piece(day, run_id, "tfrecord", "edges", key, table, 300, chunk_rows=8)
    records += write_piece(day, run_id, "jsonl", "quarantine", "a1b2c3d4e5f60718",
                           lines(version, 30), 1 << 20, chunk_rows=7)
    return records


def expected_view(version):
    rows = edges(version, 65).to_pylist()
    return version, sorted((r["src_article_id"], r["dst_article_id"], r["count"]) for r in rows), \
        lines(version, 30)


def raw(path):
    """A file's bytes as stored (FileSystems.open would decompress a .gz)."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def reader_view(day):
    """What a reader trusting _SUCCESS sees, every file set from one manifest:
    (version, edges, quarantine lines); starts again once if a listed file vanished."""
    for attempt in (0, 1):
        manifest = published_manifest(day)
        try:
            got = [(r["src_article_id"][0], r["dst_article_id"][0], r["count"][0])
                   for path in manifest_files(day, manifest, "edges")
                   for r in decode_examples(read_tfrecord_file(path)).to_pylist()]
            quarantine = [line for path in manifest_files(day, manifest, "quarantine")
                          for line in read_jsonl_file(path)]
        except OSError:
            if attempt:
                raise
            continue
        assert manifest["file_sets"]["empty"] == {"files": [], "rows": 0, "feature_spec": {}}
        return manifest["version"], sorted(got), quarantine


def listing(day):
    """The folder's files (names relative to it, any scheme) but the conditional
    store's own (_cas-: lock and counter); [] when there is no such folder."""
    prefix = f"{day.rstrip('/')}/"
    return sorted(m.path[len(prefix):]
                  for m in FileSystems.match([f"{prefix}**"])[0].metadata_list
                  if not m.path.rsplit("/", 1)[1].startswith(CAS_PREFIX))


# The time the publishing tests run at (after every run id they use starts), and the
# moment their replaced runs' files are due (the default retention later).
NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.timezone.utc)
DUE = NOW + dt.timedelta(hours=DEFAULT_KEEP_HOURS)


def clock(moment=NOW):
    return lambda: moment


def after_retention(day, moment=DUE):
    """The retention sweep of `day` at `moment`; returns the names it deleted."""
    prefix = f"{day.rstrip('/')}/"
    return sorted(p[len(prefix):] for p in sweep(day, DEFAULT_KEEP_HOURS, moment))


def run_names(day, run_id):
    """The names in the folder holding run_id."""
    return [name for name in listing(day) if run_id in name]


def published_names(day, run_id):
    manifest = json.loads(raw(f"{day}/manifest-{run_id}.json"))
    return sorted([f["name"] for s in manifest["file_sets"].values() for f in s["files"]]
                  + [f"manifest-{run_id}.json", MANIFEST, SUCCESS])


def clear(day):
    if day.startswith("fakeobj://"):
        FakeObjectStore.reset()
    elif os.path.exists(day):
        FileSystems.delete([day])


def signals_of_a_publish(kind_dir, day):
    """One publish of `day` under <kind_dir>, through PublishFileSets in a pipeline; the
    counters of the signal namespace it reported, name -> value."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing import test_pipeline
    from transforms.publishing.latest import SIGNAL_NAMESPACE
    from transforms.publishing.protocol import PublishFileSets
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    _ = (p | beam.Create([("edges", 0, edges(day, 5))])
         | PublishFileSets(f"{kind_dir}/dt={day}", {"run_date": day}))
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace(SIGNAL_NAMESPACE))
    return {c.key.metric.name: c.committed for c in found["counters"]}
