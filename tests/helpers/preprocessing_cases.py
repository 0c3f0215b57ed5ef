"""The preprocessing_fn cases, tested the way tf.Transform tests itself: analyse small
train inputs, transform train and eval inputs, compare with expected outputs and
vocabularies. Every case builds a tf.Transform pipeline, and a process that has built one
crashes at interpreter exit, so the cases run in ONE subprocess (tests/helpers/
features_runs.py starts it beside the features job's run; run_cases writes each case's
outcome to a JSON file that tests/features/test_preprocessing.py reports)."""

import json
import math
import os
import tempfile
import traceback

import numpy as np
import pyarrow as pa

from schemas import features as F


def analyze_and_transform(entity, train_rows: pa.Table, eval_rows: pa.Table, config):
    """(transformed train rows, transformed eval rows, {vocabulary: tokens}) of `entity`'s
    preprocessing_fn analysed on train_rows: lists of dicts feature -> list of values."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from transforms.features import tfxio_rows
    from transforms.features.preprocessing import preprocessing_fn_for
    work = tempfile.mkdtemp(prefix="tft-case-")
    adapter = tfxio_rows.raw_tfxio(entity).TensorAdapterConfig()
    found = {"train": [], "eval": []}
    with beam.Pipeline("FnApiRunner") as pipeline:
        with tft_beam.Context(temp_dir=os.path.join(work, "tmp")):
            train = pipeline | "Train" >> beam.Create([tfxio_rows.tfxio_batch(train_rows, entity)])
            evaluate = pipeline | "Eval" >> beam.Create([tfxio_rows.tfxio_batch(eval_rows, entity)])
            transform_fn = (train, adapter) | tft_beam.AnalyzeDataset(
                preprocessing_fn_for(entity, config))
            _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(work, "out"))
            for split, data in (("train", train), ("eval", evaluate)):
                batches, _ = (((data, adapter), transform_fn)
                              | f"Transform{split}" >> tft_beam.TransformDataset(
                                  output_record_batches=True))
                _ = (batches | f"Json{split}" >> beam.Map(lambda e: json.dumps(
                    {k: e[0].column(k).to_pylist() for k in e[0].schema.names}, default=_b))
                     | f"Write{split}" >> beam.io.WriteToText(os.path.join(work, split)))
    for split in found:
        for name in sorted(os.listdir(work)):
            if name.startswith(split + "-"):
                with open(os.path.join(work, name)) as handle:
                    for line in handle:
                        columns = json.loads(line)
                        n = len(next(iter(columns.values())))
                        found[split] += [{k: v[i] for k, v in columns.items()} for i in range(n)]
    output = tft.TFTransformOutput(os.path.join(work, "out"))
    vocabularies = {}
    for name in os.listdir(os.path.join(work, "out", "transform_fn", "assets")):
        vocabularies[name] = [t.decode() for t in output.vocabulary_by_name(name)]
    key = F.ARTICLE_ID if entity == F.ARTICLES else F.USER_ID
    for split in found:
        found[split].sort(key=lambda row: row[key])
    return found["train"], found["eval"], vocabularies


def _b(value):
    return value.decode() if isinstance(value, bytes) else value


def _z(values):
    logs = np.log1p(np.asarray(values, np.float64))
    std = logs.std()
    return list((logs - logs.mean()) / std) if std > 0 else list(logs - logs.mean())


def _close(found, expected, what):
    assert len(found) == len(expected), what
    for i, (a, b) in enumerate(zip(found, expected)):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5), f"{what}[{i}]: {a} != {b}"


def article_table(rows):
    names = [name for name, _, _ in F.ARTICLE_RAW]
    return pa.table({name: pa.array([row.get(name) for row in rows], {
        "int": pa.int64(), "float": pa.float32(), "string": pa.string()}[kind])
        for name, kind, _ in F.ARTICLE_RAW}).select(names)


def user_table(rows):
    columns = {}
    for name, kind, _ in F.USER_RAW:
        if name == F.TOP_CATEGORIES:
            columns[name] = pa.array([row.get(name, []) for row in rows], pa.list_(pa.string()))
        else:
            columns[name] = pa.array([row.get(name) for row in rows],
                                     pa.int64() if kind == "int" else pa.string())
    return pa.table(columns)


def _article(i, category, region, price, age, views, impressions, likes=0, chats=0, sold=0):
    return {F.ARTICLE_ID: f"a{i}", F.ARTICLE_INDEX: i, F.CATEGORY_ID: category,
            F.REGION_ID: region, F.PRICE: price, F.AGE_HOURS: age, F.VIEWS: views,
            F.LIKES: likes, F.CHATS: chats, F.IMPRESSIONS: impressions, F.SOLD: sold}


TRAIN_ARTICLES = [
    _article(1, "c1", "r1", 100, 0.5, 1, 10, likes=2),
    _article(2, "c1", None, None, None, 0, 0, sold=1),
    _article(3, "c2", "r1", 1000, 6.0, 2, 4, chats=1),
    _article(4, "c1", "r2", 100, 100.0, 0, 0),
    _article(5, None, None, 10000, 800.0, 5, 6, likes=1),
]
EVAL_ARTICLES = [
    _article(6, "c9", "r1", 100, 23.9, 3, 3),      # c9 never seen: OOV
    _article(7, "c1", None, None, 24.0, 0, 10),
]


def case_articles():
    """Vocabularies with min frequency 2 (c2, r2 and the missing value once: OOV bucket),
    prices log1p + z over present prices (missing -> 0.0 and price_missing 1), age
    buckets, counts log1p + z, the smoothed CTR with p = 8 / 20, ids passed through."""
    train, evaluate, vocab = analyze_and_transform(
        F.ARTICLES, article_table(TRAIN_ARTICLES), article_table(EVAL_ARTICLES),
        {"oov_buckets": 1, "vocab_min_frequency": 2, "ctr_prior": 10.0})
    # Ties of frequency are ordered by the token's bytes, descending (tf.Transform's rule).
    assert vocab == {F.VOCAB_ARTICLE_CATEGORY: ["c1"],
                     F.VOCAB_ARTICLE_REGION: ["r1", F.MISSING_TOKEN]}, vocab
    assert [r[F.ARTICLE_ID] for r in train] == [["a1"], ["a2"], ["a3"], ["a4"], ["a5"]]
    assert [r[F.ARTICLE_INDEX] for r in train] == [[1], [2], [3], [4], [5]]
    assert [r[F.CATEGORY] for r in train] == [[0], [0], [1], [0], [1]]
    # r1 twice, missing twice, r2 once (OOV 2).
    assert [r[F.REGION] for r in train] == [[0], [1], [0], [2], [1]]
    assert [r[F.PRICE_MISSING] for r in train] == [[0], [1], [0], [0], [0]]
    present = [100, 1000, 100, 10000]
    z = _z(present)
    _close([r[F.PRICE_Z][0] for r in train], [z[0], 0.0, z[1], z[2], z[3]], "price_z")
    assert [r[F.AGE_BUCKET] for r in train] == [[0], [F.AGE_MISSING_BUCKET], [2], [4], [6]]
    for name, values in ((F.VIEWS, [1, 0, 2, 0, 5]), (F.IMPRESSIONS, [10, 0, 4, 0, 6]),
                         (F.LIKES, [2, 0, 0, 0, 1]), (F.CHATS, [0, 0, 1, 0, 0])):
        _close([r[f"{name}_z"][0] for r in train], _z(values), f"{name}_z")
    p = 8 / 20
    _close([r[F.CTR][0] for r in train],
           [(v + 10 * p) / (i + 10) for v, i in ((1, 10), (0, 0), (2, 4), (0, 0), (5, 6))],
           "ctr")
    assert [r[F.SOLD] for r in train] == [[0], [1], [0], [0], [0]]
    # Eval rows use the train analysis: unseen c9 -> OOV 1; train's mean and std.
    assert [r[F.CATEGORY] for r in evaluate] == [[1], [0]]
    assert [r[F.REGION] for r in evaluate] == [[0], [1]]
    logs = np.log1p(np.array(present, np.float64))
    _close([r[F.PRICE_Z][0] for r in evaluate],
           [(np.log1p(100) - logs.mean()) / logs.std(), 0.0], "eval price_z")
    assert [r[F.AGE_BUCKET] for r in evaluate] == [[2], [3]]
    _close([r[F.CTR][0] for r in evaluate], [(3 + 4) / 13, 4 / 20], "eval ctr")


def case_articles_category_absent():
    """A window where no category reaches the min frequency (and one category has no
    article at all) still gives a transform_fn: tf.Transform writes one placeholder
    token for the empty vocabulary, and with 0 OOV buckets every value is -1."""
    rows = [_article(1, "c1", "r1", 100, 1.0, 0, 0), _article(2, "c2", "r1", 200, 2.0, 0, 0)]
    train, evaluate, vocab = analyze_and_transform(
        F.ARTICLES, article_table(rows), article_table([_article(3, "c3", "r9", 300, 3.0, 0, 0)]),
        {"oov_buckets": 0, "vocab_min_frequency": 2, "ctr_prior": 5.0})
    assert sorted(vocab) == [F.VOCAB_ARTICLE_CATEGORY, F.VOCAB_ARTICLE_REGION], vocab
    assert len(vocab[F.VOCAB_ARTICLE_CATEGORY]) == 1, vocab
    assert vocab[F.VOCAB_ARTICLE_CATEGORY][0] not in ("c1", "c2", "c3", F.MISSING_TOKEN)
    assert vocab[F.VOCAB_ARTICLE_REGION] == ["r1"], vocab
    assert [r[F.CATEGORY] for r in train] == [[-1], [-1]]
    assert [r[F.REGION] for r in train] == [[0], [0]]
    assert [r[F.CATEGORY] for r in evaluate] == [[-1]]
    assert [r[F.REGION] for r in evaluate] == [[-1]]
    # No impressions at all: p = 0, ctr = views / (impressions + a) = 0.
    assert [r[F.CTR] for r in train] == [[0.0], [0.0]]


def _user(uid, region, platform, counts, top):
    row = {F.USER_ID: uid, F.REGION_ID: region, F.PLATFORM: platform, F.TOP_CATEGORIES: top}
    row.update({name: value for name, value in zip(F.USER_COUNTS, counts)})
    return row


TRAIN_USERS = [
    _user("u1", "r1", "ios", [5, 1, 0, 0, 2], ["c1", "c2", "c3"]),
    _user("u2", "r1", "android", [0, 3, 1, 0, 0], ["c2", "c1"]),
    _user("u3", None, "ios", [9, 0, 0, 1, 0], []),
]


def case_users():
    """Region and platform vocabularies, log1p + z of each count, top categories as
    vocabulary ids in their raw order padded with -1 (c3 seen once: OOV bucket 2)."""
    train, evaluate, vocab = analyze_and_transform(
        F.USERS, user_table(TRAIN_USERS),
        user_table([_user("u4", "r7", "web", [1, 1, 1, 1, 1], ["c3", "c2"])]),
        {"oov_buckets": 1, "vocab_min_frequency": 2, "ctr_prior": 10.0})
    assert vocab == {F.VOCAB_USER_REGION: ["r1"], F.VOCAB_USER_PLATFORM: ["ios"],
                     F.VOCAB_USER_CATEGORY: ["c2", "c1"]}, vocab
    assert [r[F.USER_ID] for r in train] == [["u1"], ["u2"], ["u3"]]
    assert [r[F.REGION] for r in train] == [[0], [0], [1]]
    assert [r[F.PLATFORM] for r in train] == [[0], [1], [0]]
    assert [r[F.TOP_CATEGORIES] for r in train] == [[1, 0, 2], [0, 1, -1], [-1, -1, -1]]
    for position, name in enumerate(F.USER_COUNTS):
        values = [row[name] for row in TRAIN_USERS]
        _close([r[f"{name}_z"][0] for r in train], _z(values), f"{name}_z")
    assert [r[F.REGION] for r in evaluate] == [[1]]
    assert [r[F.PLATFORM] for r in evaluate] == [[1]]
    assert [r[F.TOP_CATEGORIES] for r in evaluate] == [[2, 0, -1]]


CASES = {name: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def run_cases(result_path: str) -> None:
    """Run every case in this process (a subprocess of the test session) and write
    {case: "ok" | traceback} to result_path."""
    results = {}
    for name, case in CASES.items():
        try:
            case()
            results[name] = "ok"
        except Exception:  # reported by test_preprocessing_case
            results[name] = traceback.format_exc()
    with open(result_path, "w") as handle:
        json.dump(results, handle)
