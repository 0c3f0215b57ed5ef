"""The versioned article index: CURRENT, versions that extend it, the moved-CURRENT
refusal (tiers 1 and 2), and a backfilled day that never reuses an index (tier 3)."""

import datetime as dt
import os

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline

from beam_jobs import cooccurrence_graph
from datagen.events import generate_events, write_export_layout
from transforms.graph import index_store
from transforms.publishing.readers import published_manifest, read_file_set, read_run_id

RUNNER = "FnApiRunner"


def pieces(ids, indexes):
    batch = pa.RecordBatch.from_arrays([pa.array(ids, pa.binary()),
                                        pa.array(indexes, pa.int64())], ["article_id", "index"])
    return [("index", 0, batch)]


def publish(out, ids, indexes, base, run_date="2026-11-26"):
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        (p | "Pieces" >> beam.Create(pieces(ids, indexes)),
         p | "Base" >> beam.Create([base])) | index_store.PublishArticleIndex(out, run_date)


def index_rows(folder):
    return sorted((r["article_id"][0].decode(), r["index"][0])
                  for r in read_file_set(folder, "index"))


@pytest.mark.composites
def test_current_is_none_then_names_the_published_version(tmp_path):
    out = str(tmp_path)
    assert index_store.read_current(out) is None
    assert index_store.current_index(out) == {"version": None, "generation": 0, "next": 1,
                                              "files": [], "seeded_from": None}
    publish(out, [b"a", b"b"], [1, 2], index_store.current_index(out))
    assert index_store.read_current(out) == 1
    with open(os.path.join(out, "article_index", "CURRENT")) as f:
        assert f.read() == "000001\n"
    v1 = index_store.version_dir(out, 1)
    assert v1.endswith("article_index/v=000001")
    assert index_rows(v1) == [("a", 1), ("b", 2)]
    m = published_manifest(v1)
    assert (m["version"], m["parent"], m["vocab_size"], m["kind"]) == (1, None, 3,
                                                                     "article_index")
    base = index_store.current_index(out)
    assert base["version"] == 1 and len(base["files"]) == 1
    publish(out, [b"a", b"b", b"c"], [1, 2, 3], base)
    assert index_store.read_current(out) == 2
    assert published_manifest(index_store.version_dir(out, 2))["parent"] == 1
    assert index_store.published_versions(out) == [1, 2]
    # Version 1 is never rewritten by a later run.
    assert index_rows(v1) == [("a", 1), ("b", 2)]


@pytest.mark.composites
def test_a_run_whose_start_version_moved_publishes_nothing(tmp_path):
    out = str(tmp_path)
    publish(out, [b"a"], [1], index_store.current_index(out))
    stale = index_store.current_index(out)          # a run starts from version 1 ...
    publish(out, [b"a", b"b"], [1, 2], stale)       # ... another run publishes 2 meanwhile
    with pytest.raises(Exception, match="the article index moved while this run ran"):
        publish(out, [b"a", b"c"], [1, 2], stale)   # the first run reaches its publish step
    assert index_store.read_current(out) == 2
    assert index_rows(index_store.version_dir(out, 2)) == [("a", 1), ("b", 2)]
    assert not os.path.exists(os.path.join(index_store.version_dir(out, 2 + 1), "_SUCCESS"))


@pytest.mark.functions
def test_check_unmoved_and_malformed_current(tmp_path):
    out = str(tmp_path)
    index_store.check_unmoved(out, {"version": None, "generation": 0})
    with pytest.raises(index_store.IndexMovedError,
                       match="started from version 3 but .* now names None"):
        index_store.check_unmoved(out, {"version": 3, "generation": 1})
    os.makedirs(os.path.join(out, "article_index"))
    with open(os.path.join(out, "article_index", "CURRENT"), "w") as f:
        f.write("12\n")
    with pytest.raises(ValueError, match="not a 6-digit article index version"):
        index_store.read_current(out)
    with pytest.raises(ValueError, match="out of range"):
        index_store.version_dir(out, 0)


@pytest.mark.jobs
def test_a_backfilled_day_never_reuses_an_index(tmp_path):
    """Day two runs first, then day one (a backfill): day one extends the newest version,
    so its new articles come after every index day two gave, and day two's keep theirs."""
    out = str(tmp_path / "out")
    days = {}
    for name, date, seed in (("two", dt.date(2026, 11, 27), 31), ("one", dt.date(2026, 11, 26), 32)):
        generated = generate_events(1500, date, seed=seed)
        write_export_layout(generated.table, str(tmp_path / name), null_partition=date,
                            drop_columns=generated.drop_columns)
        days[name] = date.isoformat()
        cooccurrence_graph.run([f"--runner={RUNNER}", f"--events={tmp_path / name}",
                                f"--run_date={date.isoformat()}", "--timezone=Asia/Seoul",
                                f"--output_dir={out}", "--allow_anomalies"])
    two = dict(index_rows(os.path.join(out, "cooccurrence", f"dt={days['two']}")))
    one = dict(index_rows(os.path.join(out, "cooccurrence", f"dt={days['one']}")))
    assert {a: one[a] for a in two} == two
    new = set(one) - set(two)
    assert new and min(one[a] for a in new) == max(two.values()) + 1
    assert sorted(one.values()) == list(range(1, len(one) + 1))
    assert published_manifest(os.path.join(out, "cooccurrence", f"dt={days['one']}"))[
        "article_index"] == {"version": 2, "parent": 1, "vocab_size": len(one) + 1}
    assert index_store.read_current(out) == 2
    assert read_run_id(index_store.version_dir(out, 1))
