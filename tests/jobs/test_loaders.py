"""Every artifact of one daily run loads with the loader its users will call: TFDV's
(tfdv.load_statistics, tfdv.load_anomalies_text, tfdv.load_schema_text), TensorFlow's
(tf.data.TFRecordDataset parsed with a tf.io feature spec built from the manifest's
feature_spec) and tf.Transform's (tft.TFTransformOutput) where features are published.

One daily run on a small generated day with a marker planted in `properties` (the session
fixture marked_daily_run, shared with tests/jobs/test_determinism.py); file lists come from the
published manifests (transforms.publish.published_files), never from a glob."""

import gzip
import json
import os

import pyarrow.parquet as pq
import pytest

from schemas import contract
from transforms.examples.params import KINDS, SPLITS
from transforms.ingest import day_files, validation
from transforms.publishing.files import SUCCESS
from transforms.publishing.readers import published_files, published_manifest
from tests.helpers.jobs import MARKER
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.jobs

RUN_DATE = "2026-11-26"
SCHEMA_PATH = os.path.join(ROOT, "schemas", "events_schema.pbtxt")
GRAPH_FILE_SETS = ("edges", "neighbors", "nodes", "index")


@pytest.fixture(scope="module")
def out(marked_daily_run):
    return marked_daily_run[2]


def _summary(out):
    with open(os.path.join(day_files.day_dir(out, RUN_DATE), day_files.SUMMARY_FILE)) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# TFDV: statistics, anomalies, the schema.


def test_validation_folder_holds_one_file_per_environment(out):
    assert sorted(os.listdir(day_files.day_dir(out, RUN_DATE))) == [
        "anomalies_client.pbtxt", "anomalies_server.pbtxt", "stats.html",
        "stats_client.tfrecord", "stats_server.tfrecord", "summary.json"]
    summary = _summary(out)
    assert (summary["blessed"], summary["overridden"], summary["anomalies"]) == (True, False, [])


def test_statistics_load_with_tfdv_load_statistics(out):
    import tensorflow_data_validation as tfdv
    summary = _summary(out)
    directory = day_files.day_dir(out, RUN_DATE)
    totals = {}
    for source, name in day_files.STATS_FILES.items():
        stats = tfdv.load_statistics(os.path.join(directory, name))
        assert len(stats.datasets) == 1
        totals[source] = stats.datasets[0].num_examples
    assert totals == summary["stats_examples"]
    assert sum(totals.values()) == summary["rows_valid"]   # stats_sample_fraction 1.0


def test_anomalies_load_with_tfdv_load_anomalies_text(out):
    import tensorflow_data_validation as tfdv
    directory = day_files.day_dir(out, RUN_DATE)
    schema = tfdv.load_schema_text(SCHEMA_PATH)
    for source, name in (("client", "anomalies_client.pbtxt"),
                         ("server", "anomalies_server.pbtxt")):
        anomalies = tfdv.load_anomalies_text(os.path.join(directory, name))
        assert anomalies.HasField("baseline")
        assert (dict(anomalies.anomaly_info), anomalies.data_missing,
                list(anomalies.drift_skew_info)) == ({}, False, [])
        # The file is exactly what TFDV says of the loaded statistics in that environment
        # against the loaded schema (no previous day, so no drift part).
        stats = tfdv.load_statistics(os.path.join(directory, day_files.STATS_FILES[source]))
        assert tfdv.validate_statistics(
            stats, schema, environment=contract.ENVIRONMENTS[source]) == anomalies


def test_schema_loads_with_tfdv_load_schema_text(out):
    import tensorflow_data_validation as tfdv
    schema = tfdv.load_schema_text(SCHEMA_PATH)
    assert sorted(schema.default_environment) == sorted(contract.ENVIRONMENTS.values())
    directory = day_files.day_dir(out, RUN_DATE)
    for source, name in day_files.STATS_FILES.items():
        stats = tfdv.load_statistics(os.path.join(directory, name))
        features = {".".join(f.path.step) for f in stats.datasets[0].features}
        assert features == set(validation.environment_features(
            schema, contract.ENVIRONMENTS[source]))


# ---------------------------------------------------------------------------------------------
# TensorFlow: every published TFRecord file set, parsed with the manifest's feature spec.

_GRAPH_KINDS = {"int64_list": "int64", "float_list": "float32", "bytes_list": "string"}


def graph_feature_spec(spec):
    """tf.io spec of a graph manifest's file_sets[set]["feature_spec"]."""
    import tensorflow as tf
    out = {}
    for name, feature in spec.items():
        dtype = tf.as_dtype(_GRAPH_KINDS[feature["kind"]])
        if feature["shape"] == "[1]":
            out[name] = tf.io.FixedLenFeature([1], dtype)
        elif feature["shape"] == "variable":
            out[name] = tf.io.VarLenFeature(dtype)
        else:
            raise AssertionError(f"{name}: unknown shape {feature['shape']!r}")
    return out


def _example_features(spec, sequence=False):
    import tensorflow as tf
    out = {}
    for name, feature in spec.items():
        dtype = tf.as_dtype(feature["dtype"])
        if feature["shape"] is None:
            out[name] = tf.io.VarLenFeature(dtype)
        elif sequence:
            out[name] = tf.io.FixedLenSequenceFeature(feature["shape"], dtype)
        else:
            out[name] = tf.io.FixedLenFeature(feature["shape"], dtype)
    return out


def _count(dataset):
    return int(dataset.reduce(0, lambda n, _: n + 1).numpy())


def parse_count(files, feature_spec):
    """Records of GZIP TFRecord `files`, each parsed with the graph tf.io `feature_spec`."""
    import tensorflow as tf
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return _count(dataset.map(lambda record: tf.io.parse_single_example(record, feature_spec)))


def parse_examples_count(files, manifest_spec):
    """Records of an examples file set, parsed as the manifest's top-level feature_spec says."""
    import tensorflow as tf
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if manifest_spec["encoding"] == "tf.train.Example":
        spec = _example_features(manifest_spec["features"])
        return _count(dataset.map(lambda record: tf.io.parse_single_example(record, spec)))
    assert manifest_spec["encoding"] == "tf.train.SequenceExample"
    context = _example_features(manifest_spec["context"])
    sequence = _example_features(manifest_spec["sequence"], sequence=True)
    return _count(dataset.map(lambda record: tf.io.parse_single_sequence_example(
        record, context_features=context, sequence_features=sequence)))


def _feature_names(record, encoding):
    import tensorflow as tf
    if encoding == "tf.train.SequenceExample":
        message = tf.train.SequenceExample.FromString(record)
        return set(message.context.feature), set(message.feature_lists.feature_list)
    return set(tf.train.Example.FromString(record).features.feature), set()


def _records(files):
    import tensorflow as tf
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


@pytest.mark.parametrize("kind, file_set", [("cooccurrence", s) for s in GRAPH_FILE_SETS]
                         + [("article_index", "index")])
def test_graph_file_sets_parse_with_the_manifest_spec(out, kind, file_set):
    if kind == "article_index":
        with open(os.path.join(out, "article_index", "CURRENT")) as handle:
            day_dir = os.path.join(out, "article_index", f"v={handle.read().strip()}")
    else:
        day_dir = os.path.join(out, kind, f"dt={RUN_DATE}")
    manifest = published_manifest(day_dir)
    entry = manifest["file_sets"][file_set]
    files = published_files(day_dir, file_set)
    assert len(files) == len(entry["files"]) >= 1
    spec = graph_feature_spec(entry["feature_spec"])
    assert parse_count(files, spec) == entry["rows"]
    assert entry["rows"] > 0
    # The spec names every feature a record has.
    for record in _records(files):
        assert _feature_names(record, "tf.train.Example")[0] <= set(spec)


def test_article_index_parses_to_indexes_1_to_vocab_size_minus_1(out):
    """Parsed with the manifest's spec, the index version holds each index 1..vocab_size-1
    once (0 is reserved), each for a different article."""
    import tensorflow as tf
    with open(os.path.join(out, "article_index", "CURRENT")) as handle:
        day_dir = os.path.join(out, "article_index", f"v={handle.read().strip()}")
    manifest = published_manifest(day_dir)
    spec = graph_feature_spec(manifest["file_sets"]["index"]["feature_spec"])
    dataset = tf.data.TFRecordDataset(published_files(day_dir, "index"), compression_type="GZIP")
    parsed = [tf.io.parse_single_example(record, spec) for record in dataset]
    indexes = sorted(int(p["index"].numpy()[0]) for p in parsed)
    assert indexes == list(range(1, manifest["vocab_size"]))
    assert len({p["article_id"].numpy()[0] for p in parsed}) == len(parsed)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("split", SPLITS)
def test_example_file_sets_parse_with_the_manifest_spec(out, kind, split):
    day_dir = os.path.join(out, "examples", kind, f"dt={RUN_DATE}")
    assert os.path.exists(os.path.join(day_dir, SUCCESS))
    manifest = published_manifest(day_dir)
    assert manifest["kind"] == kind
    spec = manifest["feature_spec"]
    files = published_files(day_dir, split)
    assert len(files) == len(manifest["file_sets"][split]["files"]) >= 1
    rows = manifest["file_sets"][split]["rows"]
    assert rows > 0
    assert parse_examples_count(files, spec) == rows
    if spec["encoding"] == "tf.train.Example":
        declared = (set(spec["features"]), set())
    else:
        declared = (set(spec["context"]), set(spec["sequence"]))
    for record in _records(files):
        found = _feature_names(record, spec["encoding"])
        assert found[0] <= declared[0] and found[1] <= declared[1]


# ---------------------------------------------------------------------------------------------
# tf.Transform: the daily run's features outputs (every stage runs here, as in make demo).


def test_features_load_with_tft_transform_output(out):
    from schemas import features as F
    published = [entity for entity in F.ENTITIES
                 if os.path.exists(os.path.join(out, "features", entity, f"dt={RUN_DATE}",
                                                SUCCESS))]
    import tensorflow_transform as tft
    from transforms.features.stage import transform_output_dir
    assert published == list(F.ENTITIES)
    for entity in F.ENTITIES:
        output = tft.TFTransformOutput(
            transform_output_dir(os.path.join(out, "features", entity, f"dt={RUN_DATE}")))
        assert output.raw_feature_spec() == F.raw_feature_spec(entity)
        assert sorted(output.transformed_feature_spec()) == sorted(
            F.TRANSFORMED_FEATURES[entity])


def test_the_report_lists_every_stage(out):
    """What make demo prints after the daily job: every published kind, with its counts."""
    from beam_jobs.report import report
    from transforms.publishing.readers import published_manifest
    lines = report(out, RUN_DATE)
    text = "\n".join(lines)
    for kind in ("skipgram", "sequences", "ranking"):
        sets = published_manifest(os.path.join(out, "examples", kind, f"dt={RUN_DATE}"))[
            "file_sets"]
        assert f"examples/{kind:<10}train {sets['train']['rows']:,} records" in text
    for entity in ("articles", "users"):
        sets = published_manifest(os.path.join(out, "features", entity, f"dt={RUN_DATE}"))[
            "file_sets"]
        assert (f"features/{entity:<9} BLESSED  train {sets['train']['rows']:,} rows, "
                f"eval {sets['eval']['rows']:,} rows") in text
    vocab = published_manifest(os.path.join(out, "cooccurrence", f"dt={RUN_DATE}"))[
        "article_index"]["vocab_size"]
    assert (f"article_index/  version 1 (extends None), vocab_size {vocab:,}; "
            "1 version(s) published, CURRENT names 1") in text


def _decoded(path: str) -> bytes:
    """A file's bytes as a reader sees them: GZIP decompressed (TFRecords' strings are then
    plain bytes), Parquet decoded to its values; anything else as stored."""
    with open(path, "rb") as handle:
        data = handle.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    if path.endswith(".parquet"):
        data += repr(pq.read_table(path, partitioning=None).to_pylist()).encode("utf-8")
    return data


def test_no_free_text_leaves_the_quarantine_and_the_validated_rows(out):
    """The planted query, referrer, surface, channel, reason and unknown key are in no file
    of the day's outputs but quarantine/ and validated/ (statistics, stats.html, summaries,
    graph, examples, features and their transform graphs), decoded as their readers read
    them; the same search finds them where they are meant to be."""
    marker = MARKER.encode("utf-8")
    found, searched = {}, 0
    for folder, _, names in os.walk(out):
        for name in names:
            path = os.path.join(folder, name)
            top = os.path.relpath(path, out).split(os.sep)[0]
            if marker in _decoded(path):
                found.setdefault(top, []).append(os.path.relpath(path, out))
            searched += top not in ("quarantine", "validated")
    assert searched > 50
    assert sorted(found) == ["quarantine", "validated"], found
    # The day was blessed with the planted rows, and the statistics described them.
    summary = _summary(out)
    assert summary["blessed"] is True
    assert summary["quarantined_by_reason"]["bad_properties"] >= 1
    import tensorflow_data_validation as tfdv
    client = tfdv.load_statistics(os.path.join(day_files.day_dir(out, RUN_DATE),
                                               "stats_client.tfrecord"))
    features = {".".join(f.path.step): f for f in client.datasets[0].features}
    assert "properties" not in features
    surface = features["properties_surface"].string_stats
    assert "other" in {v.value for v in surface.top_values}
