"""training.reader: what it yields equals the published files decoded record by record
(one real run of beam_jobs.training_examples on a generated day, shared by the module),
and what it refuses (hand-made days: copies of that day with edited manifests)."""

import datetime as dt
import json
import os
import shutil

import numpy as np
import pytest

from beam_jobs import training_examples
from datagen.events import generate_events, write_export_layout
from training import reader
from transforms.publishing.files import SUCCESS
from transforms.publishing.readers import published_files, published_manifest
from transforms.publishing.tfrecord import read_tfrecord_file
from tests.helpers.paths import SALT_FILE

RUN_DATE = "2026-11-26"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """<output_dir> of one run of the job (all three kinds) on a generated day."""
    root = tmp_path_factory.mktemp("reader")
    day = generate_events(20_000, dt.date.fromisoformat(RUN_DATE), seed=7)
    write_export_layout(day.table, str(root / "events"),
                        null_partition=dt.date.fromisoformat(RUN_DATE))
    training_examples.run(["--runner=FnApiRunner", f"--user_id_salt_file={SALT_FILE}",
                           f"--events={root / 'events'}", f"--run_date={RUN_DATE}",
                           "--timezone=Asia/Seoul", f"--output_dir={root / 'out'}"])
    return str(root / "out")


def day_dir(out, kind, day=RUN_DATE):
    return os.path.join(out, "examples", kind, f"dt={day}")


# ---------------------------------------------------------------------------------------------
# Decoding the files directly: the TFRecord framing read by transforms.publishing.tfrecord (CRCs
# checked), each record parsed by protobuf.


def records_of(out, kind, split):
    return [r for path in published_files(day_dir(out, kind), split)
            for r in read_tfrecord_file(path)]


def values_of(feature):
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def direct_pairs(out, split):
    import tensorflow as tf
    n = published_manifest(day_dir(out, "skipgram"))["options"]["skipgram_negatives"]
    target, context, negatives = [], [], []
    for record in records_of(out, "skipgram", split):
        feature = tf.train.Example.FromString(record).features.feature
        target += values_of(feature["target"])
        context += values_of(feature["context"])
        negatives += values_of(feature["negatives"])
    return (np.array(target, np.int64), np.array(context, np.int64),
            np.array(negatives, np.int64).reshape(-1, n))


def direct_sequences(out, kind, split):
    """[(context {name: value}, sequence {name: [values per step]})] in file order."""
    import tensorflow as tf
    rows = []
    for record in records_of(out, kind, split):
        example = tf.train.SequenceExample.FromString(record)
        context = {name: values_of(f)[0] for name, f in example.context.feature.items()}
        sequence = {name: [values_of(step)[0] for step in lists.feature]
                    for name, lists in example.feature_lists.feature_list.items()}
        rows.append((context, sequence))
    return rows


def read_pairs(dataset):
    batches = list(dataset.as_numpy_iterator())
    return batches, tuple(np.concatenate([b[name] for b in batches])
                          for name in ("target", "context", "negatives"))


def read_sequences(dataset):
    """The reader's batches as [(context, sequence)] with each list cut to its length."""
    rows, sizes = [], []
    for batch in dataset.as_numpy_iterator():
        lengths = batch["lengths"]
        sizes.append(len(next(iter(lengths.values()))))
        for i in range(sizes[-1]):
            context = {k: v[i] for k, v in batch["context"].items()}
            sequence = {k: v[i][:lengths[k][i]].tolist() for k, v in batch["sequence"].items()}
            padding = {k: v[i][lengths[k][i]:].tolist() for k, v in batch["sequence"].items()}
            assert all(p in (0, b"") for values in padding.values() for p in values)
            rows.append((context, sequence))
    return rows, sizes


def plain(rows):
    """Rows with numpy scalars as Python values, comparable with the direct decoding."""
    def value(v):
        return v.item() if isinstance(v, np.generic) else v
    return [({k: value(v) for k, v in c.items()},
             {k: [value(x) for x in v] for k, v in s.items()}) for c, s in rows]


# ---------------------------------------------------------------------------------------------
# What the reader yields


@pytest.mark.jobs
@pytest.mark.parametrize("split", ["train", "eval"])
def test_skipgram_yields_the_files_pairs_in_order_unshuffled(out, split):
    manifest = published_manifest(day_dir(out, "skipgram"))
    days = reader.open_days(out, "skipgram", split, verify_crc32c=True)
    batches, (target, context, negatives) = read_pairs(
        days.dataset(batch_size=100, shuffle_buffer=0, num_parallel_reads=1))
    expected = direct_pairs(out, split)
    pairs = manifest["counts"][f"skipgram_pairs_{split}"]
    assert days.examples == pairs == len(target) == len(expected[0])
    assert days.records == manifest["file_sets"][split]["rows"]
    assert [len(b["target"]) for b in batches] == \
        [100] * (pairs // 100) + ([pairs % 100] if pairs % 100 else [])
    assert negatives.shape == (pairs, manifest["options"]["skipgram_negatives"])
    assert np.array_equal(target, expected[0])
    assert np.array_equal(context, expected[1])
    assert np.array_equal(negatives, expected[2])


@pytest.mark.jobs
def test_skipgram_shuffled_is_a_seeded_permutation_of_the_pairs(out):
    days = reader.open_days(out, "skipgram", "train")
    dataset = days.dataset(batch_size=256, shuffle_buffer=2048, seed=3)
    batches, pairs = read_pairs(dataset)
    _, again = read_pairs(days.dataset(batch_size=256, shuffle_buffer=2048, seed=3))
    _, second_pass = read_pairs(dataset)
    expected = direct_pairs(out, "train")

    def rows(columns):
        return sorted(zip(columns[0].tolist(), columns[1].tolist(),
                          map(tuple, columns[2].tolist())))

    assert rows(pairs) == rows(expected)
    assert [len(b["target"]) for b in batches[:-1]] == [256] * (len(batches) - 1)
    assert all(np.array_equal(a, b) for a, b in zip(pairs, again))
    assert not np.array_equal(pairs[0], expected[0])
    assert not np.array_equal(second_pass[0], pairs[0])   # each pass shuffled anew
    assert rows(second_pass) == rows(expected)


@pytest.mark.jobs
def test_skipgram_drop_remainder_gives_full_batches_only(out):
    days = reader.open_days(out, "skipgram", "train")
    batches, (target, _, _) = read_pairs(
        days.dataset(batch_size=1000, seed=1, drop_remainder=True))
    assert [len(b["target"]) for b in batches] == [1000] * (days.examples // 1000)


@pytest.mark.jobs
@pytest.mark.parametrize("kind", ["sequences", "ranking"])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_sequence_kinds_yield_the_files_records_unshuffled(out, kind, split):
    manifest = published_manifest(day_dir(out, kind))
    days = reader.open_days(out, kind, split)
    rows, sizes = read_sequences(days.dataset(batch_size=64, shuffle_buffer=0,
                                              num_parallel_reads=1))
    expected = direct_sequences(out, kind, split)
    records = manifest["file_sets"][split]["rows"]
    assert days.records == days.examples == records == len(rows) == len(expected)
    assert sizes == [64] * (records // 64) + ([records % 64] if records % 64 else [])
    assert plain(rows) == expected


def key(row):
    return json.dumps(row, sort_keys=True, default=repr)


@pytest.mark.jobs
@pytest.mark.parametrize("kind", ["sequences", "ranking"])
def test_sequence_kinds_shuffled_hold_the_same_records(out, kind):
    rows, _ = read_sequences(reader.make_dataset(out, kind, batch_size=50, seed=9))
    expected = direct_sequences(out, kind, "train")
    assert sorted(map(key, plain(rows))) == sorted(map(key, expected))
    assert plain(rows) != expected


@pytest.mark.jobs
def test_vocab_size_index_version_and_spec_come_from_the_manifest(out):
    for kind in reader.KINDS:
        manifest = published_manifest(day_dir(out, kind))
        days = reader.open_days(out, kind)
        assert (days.vocab_size, days.index_version) == \
            (manifest["article_index"]["vocab_size"], manifest["article_index"]["version"])
        assert days.feature_spec == manifest["feature_spec"]
        assert [d.day for d in days.days] == [RUN_DATE]
    assert reader.open_days(out, "skipgram").skipgram_negatives == 4
    assert reader.open_days(out, "ranking").skipgram_negatives is None


# ---------------------------------------------------------------------------------------------
# Feature specs


@pytest.mark.functions
def test_feature_spec_to_tf():
    import tensorflow as tf
    example = {"encoding": "tf.train.Example",
               "features": {"target": {"dtype": "int64", "shape": None},
                            "score": {"dtype": "float32", "shape": []},
                            "tags": {"dtype": "string", "shape": [3]}}}
    assert reader.feature_spec_to_tf(example) == (
        {"target": tf.io.VarLenFeature(tf.int64),
         "score": tf.io.FixedLenFeature([], tf.float32),
         "tags": tf.io.FixedLenFeature([3], tf.string)}, {})
    sequence = {"encoding": "tf.train.SequenceExample",
                "context": {"user_id": {"dtype": "string", "shape": []}},
                "sequence": {"article": {"dtype": "int64", "shape": []},
                             "words": {"dtype": "string", "shape": None}}}
    assert reader.feature_spec_to_tf(sequence) == (
        {"user_id": tf.io.FixedLenFeature([], tf.string)},
        {"article": tf.io.FixedLenSequenceFeature([], tf.int64),
         "words": tf.io.VarLenFeature(tf.string)})
    with pytest.raises(ValueError, match="feature 'x': dtype 'int32' is not one of"):
        reader.feature_spec_to_tf({"encoding": "tf.train.Example",
                                   "features": {"x": {"dtype": "int32", "shape": []}}})
    with pytest.raises(ValueError, match="encoding 'json'"):
        reader.feature_spec_to_tf({"encoding": "json"})


# ---------------------------------------------------------------------------------------------
# Hand-made days: copies of the real day under another output_dir, manifests edited


def clone_day(out, target, kind, day, edit=None, success=True):
    """Copy the published day of `kind` to <target>/examples/<kind>/dt=<day>, its run
    manifest rewritten for `day` and edited by `edit(manifest)`."""
    source = day_dir(out, kind)
    manifest = published_manifest(source)
    folder = day_dir(str(target), kind, day)
    os.makedirs(folder, exist_ok=True)
    for file_set in manifest["file_sets"].values():
        for entry in file_set["files"]:
            shutil.copyfile(os.path.join(source, entry["name"]),
                            os.path.join(folder, entry["name"]))
    manifest = json.loads(json.dumps(manifest))
    manifest["run_date"] = day
    if edit:
        edit(manifest)
    with open(os.path.join(folder, f"manifest-{manifest['run_id']}.json"), "w") as f:
        json.dump(manifest, f)
    if success:
        with open(os.path.join(folder, SUCCESS), "w") as f:
            f.write(manifest["run_id"])
    return folder


def index_version(target, version, parent, vocab_size):
    """A hand-made article index version folder (manifest and _SUCCESS only)."""
    folder = os.path.join(str(target), "article_index", f"v={version:06d}")
    os.makedirs(folder, exist_ok=True)
    run_id = f"hand-{version}"
    with open(os.path.join(folder, f"manifest-{run_id}.json"), "w") as f:
        json.dump({"kind": "article_index", "version": version, "parent": parent,
                   "vocab_size": vocab_size, "file_sets": {"index": {"files": [], "rows": 0}}},
                  f)
    with open(os.path.join(folder, SUCCESS), "w") as f:
        f.write(run_id)


def with_index(version, parent, vocab_size):
    def edit(manifest):
        manifest["article_index"] = {"version": version, "parent": parent,
                                     "vocab_size": vocab_size}
    return edit


def days_of(first, n):
    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


@pytest.mark.jobs
def test_default_days_train_last_n_published_eval_newest_only(out, tmp_path):
    published = days_of("2026-11-15", 9)
    for day in published:
        clone_day(out, tmp_path, "sequences", day)
    clone_day(out, tmp_path, "sequences", "2026-11-24", success=False)   # never finished
    per_day = published_manifest(day_dir(out, "sequences"))["file_sets"]
    train = reader.open_days(str(tmp_path), "sequences")
    assert [d.day for d in train.days] == published[-7:]
    assert train.records == 7 * per_day["train"]["rows"]
    assert len(train.files) == 7 * len(per_day["train"]["files"])
    assert [d.day for d in reader.open_days(str(tmp_path), "sequences", last_n_days=3).days] \
        == published[-3:]
    assert [d.day for d in reader.open_days(str(tmp_path), "sequences",
                                            until="2026-11-20").days] == published[:6]
    evaluation = reader.open_days(str(tmp_path), "sequences", "eval")
    assert [d.day for d in evaluation.days] == [published[-1]]
    assert evaluation.records == per_day["eval"]["rows"]
    one_day = direct_sequences(out, "sequences", "train")
    rows, sizes = read_sequences(reader.make_dataset(
        str(tmp_path), "sequences", last_n_days=2, batch_size=128, shuffle_buffer=0,
        num_parallel_reads=1))
    assert plain(rows) == one_day + one_day                  # day after day, file order
    assert sizes[:-1] == [128] * (len(sizes) - 1)
    for options in ({"shuffle_buffer": 0}, {"seed": 1}):    # files interleaved; shuffled
        rows, _ = read_sequences(reader.make_dataset(
            str(tmp_path), "sequences", last_n_days=2, batch_size=128, **options))
        assert sorted(map(key, plain(rows))) == sorted(map(key, one_day + one_day))


@pytest.mark.jobs
def test_refuses_a_day_without_success(out, tmp_path):
    clone_day(out, tmp_path, "skipgram", "2026-11-20")
    clone_day(out, tmp_path, "skipgram", "2026-11-21", success=False)
    with pytest.raises(ValueError, match=r"day 2026-11-21 of skipgram: .*dt=2026-11-21 has "
                                         r"no _SUCCESS, so the day is not published"):
        reader.open_days(str(tmp_path), "skipgram", days=["2026-11-20", "2026-11-21"])
    with pytest.raises(ValueError, match=r"has no published day"):
        reader.open_days(str(tmp_path), "ranking")


@pytest.mark.jobs
def test_refuses_unblessed_and_overridden_days_unless_allowed(out, tmp_path):
    def validation(blessed, overridden):
        return lambda m: m["validation"].update(blessed=blessed, overridden=overridden)
    clone_day(out, tmp_path, "ranking", "2026-11-20", validation(False, False))
    clone_day(out, tmp_path, "ranking", "2026-11-21", validation(True, True))
    clone_day(out, tmp_path, "ranking", "2026-11-22", lambda m: m.pop("validation"))
    clone_day(out, tmp_path, "ranking", "2026-11-23")
    target = str(tmp_path)
    with pytest.raises(ValueError, match=r"day 2026-11-20 of ranking: its validation is not "
                                         r"blessed .*allow_unblessed=True"):
        reader.open_days(target, "ranking", days=["2026-11-20", "2026-11-23"])
    with pytest.raises(ValueError, match=r"day 2026-11-21 of ranking: it was blessed by an "
                                         r"override of the validation gate"):
        reader.open_days(target, "ranking", days=["2026-11-21"])
    with pytest.raises(ValueError, match=r"day 2026-11-22 of ranking: its validation is not "
                                         r"blessed .*validation: None"):
        reader.open_days(target, "ranking", days=["2026-11-22"])
    with pytest.raises(ValueError, match="day 2026-11-20 of ranking"):
        reader.open_days(target, "ranking")            # the default days include it
    allowed = reader.open_days(target, "ranking", allow_unblessed=True)
    assert [d.day for d in allowed.days] == days_of("2026-11-20", 4)
    assert [d.day for d in reader.open_days(target, "ranking", days=["2026-11-23"]).days] \
        == ["2026-11-23"]


@pytest.mark.jobs
def test_index_versions_on_one_chain_are_read_together(out, tmp_path):
    vocab = published_manifest(day_dir(out, "skipgram"))["article_index"]["vocab_size"]
    index_version(tmp_path, 1, None, vocab)
    index_version(tmp_path, 2, 1, vocab + 10)
    index_version(tmp_path, 3, 2, vocab + 25)
    clone_day(out, tmp_path, "skipgram", "2026-11-20", with_index(1, None, vocab))
    clone_day(out, tmp_path, "skipgram", "2026-11-22", with_index(3, 2, vocab + 25))
    clone_day(out, tmp_path, "skipgram", "2026-11-21", with_index(3, 2, vocab + 25))
    days = reader.open_days(str(tmp_path), "skipgram")
    assert (days.vocab_size, days.index_version) == (vocab + 25, 3)
    assert [d.index_version for d in days.days] == [1, 3, 3]
    assert reader.index_chain(str(tmp_path), 3).keys() == {3, 2, 1}


def index_pairs(folder):
    """[(article_id, index)] of an index version folder's files, decoded by protobuf."""
    import tensorflow as tf
    pairs = []
    for path in published_files(folder, "index"):
        for record in read_tfrecord_file(path):
            feature = tf.train.Example.FromString(record).features.feature
            pairs.append((values_of(feature["article_id"])[0].decode("utf-8"),
                          values_of(feature["index"])[0]))
    return pairs


@pytest.mark.jobs
def test_vocabulary_is_the_index_version_the_days_were_written_with(out, tmp_path):
    days = reader.open_days(out, "skipgram")
    real = os.path.join(out, "article_index", f"v={days.index_version:06d}")
    expected = index_pairs(real)
    ids, index = days.vocabulary()
    assert list(zip(ids.to_pylist(), index.tolist())) == expected
    assert sorted(index.tolist()) == list(range(1, days.vocab_size))
    assert set(direct_pairs(out, "train")[0].tolist()) <= set(index.tolist())
    # Hand-made: version 1 lists no files, version 2 holds the real version's files.
    vocab = days.vocab_size
    index_version(tmp_path, 1, None, vocab)
    manifest = published_manifest(real)
    folder = os.path.join(str(tmp_path), "article_index", "v=000002")
    os.makedirs(folder)
    for entry in manifest["file_sets"]["index"]["files"]:
        shutil.copyfile(os.path.join(real, entry["name"]), os.path.join(folder, entry["name"]))
    manifest = dict(manifest, version=2, parent=1, run_id="copy-2")
    with open(os.path.join(folder, "manifest-copy-2.json"), "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(folder, SUCCESS), "w") as f:
        f.write("copy-2")
    clone_day(out, tmp_path, "skipgram", "2026-11-20", with_index(1, None, vocab))
    first = reader.open_days(str(tmp_path), "skipgram")
    assert first.index_version == 1
    assert [v.tolist() for v in first.vocabulary()] == [[], []]
    clone_day(out, tmp_path, "skipgram", "2026-11-21", with_index(2, 1, vocab))
    both = reader.open_days(str(tmp_path), "skipgram")
    assert both.index_version == 2
    ids, index = both.vocabulary()
    assert list(zip(ids.to_pylist(), index.tolist())) == expected


@pytest.mark.jobs
def test_refuses_index_versions_that_disagree(out, tmp_path):
    vocab = published_manifest(day_dir(out, "skipgram"))["article_index"]["vocab_size"]
    target = str(tmp_path)
    index_version(tmp_path, 1, None, vocab)
    index_version(tmp_path, 2, None, vocab + 5)   # a second root: an index started over
    index_version(tmp_path, 3, 2, vocab + 9)
    clone_day(out, tmp_path, "skipgram", "2026-11-20", with_index(1, None, vocab))
    clone_day(out, tmp_path, "skipgram", "2026-11-21", with_index(3, 2, vocab + 9))
    with pytest.raises(ValueError, match=r"day 2026-11-20 of skipgram was written with article "
                                         r"index version 1, which is not an ancestor of version "
                                         r"3 \(day 2026-11-21; parent chain 3 -> 2 -> \(root\)\)"):
        reader.open_days(target, "skipgram")
    # Each day alone is fine.
    assert reader.open_days(target, "skipgram", days=["2026-11-20"]).vocab_size == vocab
    assert reader.open_days(target, "skipgram", days=["2026-11-21"]).vocab_size == vocab + 9
    # One version, two different indexes.
    clone_day(out, tmp_path, "skipgram", "2026-11-22", with_index(3, 2, vocab + 7))
    with pytest.raises(ValueError, match=r"days 2026-11-21 and 2026-11-22 of skipgram both name "
                                         r"article index version 3 but disagree"):
        reader.open_days(target, "skipgram", days=["2026-11-21", "2026-11-22"])
    # A version on the chain, but not the store's version of that number.
    clone_day(out, tmp_path, "skipgram", "2026-11-23", with_index(2, None, vocab + 6))
    with pytest.raises(ValueError, match=r"day 2026-11-23 of skipgram names article index "
                                         r"version 2 with parent None and vocab_size "
                                         f"{vocab + 6}, but .*v=000002 has parent None and "
                                         f"vocab_size {vocab + 5}"):
        reader.open_days(target, "skipgram", days=["2026-11-21", "2026-11-23"])
    # A chain through a version that is not published.
    os.remove(os.path.join(target, "article_index", "v=000002", SUCCESS))
    with pytest.raises(ValueError, match=r"article index version 2 \(in the parent chain of "
                                         r"version 3\) is not published"):
        reader.open_days(target, "skipgram", days=["2026-11-21", "2026-11-23"])


@pytest.mark.jobs
def test_refuses_days_with_different_negatives_per_pair(out, tmp_path):
    clone_day(out, tmp_path, "skipgram", "2026-11-20")
    clone_day(out, tmp_path, "skipgram", "2026-11-21",
              lambda m: m["options"].update(skipgram_negatives=8))
    with pytest.raises(ValueError, match=r"days 2026-11-20 and 2026-11-21 of skipgram differ "
                                         r"in their skipgram_negatives \(4 vs 8\)"):
        reader.open_days(str(tmp_path), "skipgram")


@pytest.mark.jobs
def test_checks_file_sizes_always_and_crc32c_on_request(out, tmp_path):
    folder = clone_day(out, tmp_path, "sequences", "2026-11-20")
    path = os.path.join(folder, published_manifest(folder)["file_sets"]["train"]["files"][0]
                        ["name"])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF                   # same size, other bytes
    open(path, "wb").write(bytes(data))
    target = str(tmp_path)
    assert reader.open_days(target, "sequences").records > 0
    with pytest.raises(ValueError, match=r"day 2026-11-20: .*\.tfrecord\.gz has CRC32C "
                                         r"[0-9a-f]{8}, the manifest says [0-9a-f]{8}"):
        reader.open_days(target, "sequences", verify_crc32c=True)
    open(path, "ab").write(b"x")
    with pytest.raises(ValueError, match=rf"day 2026-11-20: .* has {len(data) + 1} bytes, the "
                                         rf"manifest says {len(data)}"):
        reader.open_days(target, "sequences")
    os.remove(path)
    with pytest.raises(ValueError, match=r"listed in the manifest but absent"):
        reader.open_days(target, "sequences")


@pytest.mark.jobs
def test_refuses_bad_arguments(out):
    with pytest.raises(ValueError, match=r"kind 'pairs' is not one of"):
        reader.open_days(out, "pairs")
    with pytest.raises(ValueError, match=r"split 'test' is not one of"):
        reader.open_days(out, "skipgram", "test")
    with pytest.raises(ValueError, match=r"day '26-11-2026' is not a date YYYY-MM-DD"):
        reader.open_days(out, "skipgram", days=["26-11-2026"])
    with pytest.raises(ValueError, match=r"last_n_days=0 must be >= 1"):
        reader.open_days(out, "skipgram", last_n_days=0)
    with pytest.raises(ValueError, match=r"batch_size=0 must be >= 1"):
        reader.make_dataset(out, "skipgram", batch_size=0)


def republish(folder, keep_hours=None):
    """The day of `folder` published again by a new run (its files copied under the new
    run id), with the default retention unless keep_hours is given; returns the run id."""
    from transforms.publishing.protocol import publish_day
    from transforms.publishing.runs import new_run_id
    from transforms.publishing.writers import FileRecord
    manifest = published_manifest(folder)
    run_id = new_run_id()
    records = []
    for file_set, entry in manifest["file_sets"].items():
        for f in entry["files"]:
            name = f["name"].replace(manifest["run_id"], run_id)
            shutil.copyfile(os.path.join(folder, f["name"]), os.path.join(folder, name))
            records.append(FileRecord(file_set, name, f["rows"], f["size_bytes"],
                                      entry["feature_spec"], f.get("crc32c", "")))
    fields = {k: v for k, v in manifest.items()
              if k not in ("run_id", "file_sets", "replaces", "committed_at")}
    retention = {} if keep_hours is None else {"keep_hours": keep_hours}
    publish_day(folder, run_id, records, fields, tuple(manifest["file_sets"]), **retention)
    return run_id


@pytest.mark.jobs
def test_a_reader_that_opened_a_day_reads_it_to_the_end_after_a_republish(out, tmp_path):
    """A training job lists a day's files once (open_days) and reads them every epoch; a
    republish of the day (backfill --force) keeps the replaced run's files for the
    retention, so the reader's whole list stays readable."""
    copy = str(tmp_path / "out")
    shutil.copytree(out, copy)
    folder = day_dir(copy, "sequences")
    days = reader.open_days(copy, "sequences", "train")
    first = [r for path in days.files for r in read_tfrecord_file(path)]
    old_run = published_manifest(folder)["run_id"]
    new_run = republish(folder)
    assert published_manifest(folder)["run_id"] == new_run != old_run
    assert all(os.path.exists(path) for path in days.files)
    assert [r for path in days.files for r in read_tfrecord_file(path)] == first
    rows, _ = read_sequences(days.dataset(batch_size=64, shuffle_buffer=0,
                                          num_parallel_reads=1))
    assert len(rows) == days.examples == len(first) > 0
    # The day as a reader opening it now finds it: the new run's files, same records.
    again = reader.open_days(copy, "sequences", "train")
    assert all(new_run in path for path in again.files)
    assert [r for path in again.files for r in read_tfrecord_file(path)] == first


@pytest.mark.jobs
def test_refuses_days_across_a_seeded_index_that_index_from_used_to_hide(out, tmp_path):
    """--index_from used to continue another index while recording CURRENT as the parent,
    so the reader took days on both for one index. Now a seed is a new root that records
    where it came from: days on the old chain and on the seed are refused together."""
    from tests.helpers.index_runs import commit_version, start_run
    from tests.helpers.publishing_days import clock
    target, elsewhere = str(tmp_path / "out"), str(tmp_path / "elsewhere")
    commit_version(elsewhere, "20261120T000000Z-e15e0000", start_run(elsewhere), ["s1", "s2"],
                   clock())
    first = commit_version(target, "20261120T000000Z-0f1a0000", start_run(target),
                           ["a1", "a2", "a3"], clock())
    # An operator removes CURRENT to make --index_from seed the folder again.
    os.remove(os.path.join(target, "article_index", "CURRENT"))
    seed = start_run(target, index_from=os.path.join(elsewhere, "article_index", "v=000001"))
    second = commit_version(target, "20261121T000000Z-0f1b0000", seed, ["b1"], clock())
    assert (second["version"], second["parent"], second["mapping"]["s1"]) == (2, None, 1)
    assert first["mapping"]["a1"] == 1     # index 1 names two articles on the two roots
    for day, index in (("2026-11-20", first), ("2026-11-21", second)):
        clone_day(out, target, "skipgram", day,
                  with_index(index["version"], index["parent"], index["vocab_size"]))
    with pytest.raises(ValueError, match=r"day 2026-11-20 of skipgram was written with article "
                                         r"index version 1, which is not an ancestor of version "
                                         r"2 \(day 2026-11-21; parent chain 2 -> \(root\)\)"):
        reader.open_days(target, "skipgram")
