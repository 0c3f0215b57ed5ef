"""Tier 1: tf.train.Example / SequenceExample wire encoding, checked against TensorFlow.

The only test module of example_proto, sequence_proto, sequences and ranking that
imports TensorFlow (the tests that need it are skipped without it): it checks the encoder
(and the plain-Python decoder the other tests use) against TensorFlow's own protos and
parsing ops, and the published feature specs against tf.io.parse_single_sequence_example
on real records. The vectorised batch encoder (sequence_proto) is checked byte for byte
against the record-by-record one it replaced (kept here as
_encode_sequence_examples_reference).
"""

import re

import numpy as np
import pyarrow as pa
import pytest

from transforms.examples import example_proto as ep
from transforms.examples import sequence_proto as sp

try:
    import tensorflow as tf
except ImportError:                 # the byte-level tests below still run
    tf = None

pytestmark = pytest.mark.functions

requires_tf = pytest.mark.skipif(tf is None, reason="TensorFlow is not installed")

INT64_EDGES = [0, 1, -1, 127, 128, -128, 16383, 16384, 2**31 - 1, -2**31, 2**32, 2**35 - 1,
               2**56 - 1, 2**56, 2**62, 2**63 - 2, 2**63 - 1, -2**63, -2**63 + 1, -2**62]


def tf_feature(kind, values):
    if isinstance(values, (str, bytes)) or (not isinstance(values, (list, tuple))
                                            and np.ndim(values) == 0):
        values = [values]
    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode() if isinstance(v, str) else v for v in values]))


def tf_example(features):
    return tf.train.Example(features=tf.train.Features(
        feature={k: tf_feature(kind, v) for k, (kind, v) in features.items()}))


def tf_sequence_example(context, feature_lists):
    return tf.train.SequenceExample(
        context=tf.train.Features(feature={k: tf_feature(kind, v)
                                           for k, (kind, v) in context.items()}),
        feature_lists=tf.train.FeatureLists(feature_list={
            k: tf.train.FeatureList(feature=[tf_feature(kind, np.atleast_1d(s).tolist()
                                                        if not isinstance(s, (str, bytes))
                                                        else [s]) for s in steps])
            for k, (kind, steps) in feature_lists.items()}))


def same_as_tf(record, reference):
    """The record parses to exactly the reference message, and its map entries are written
    in sorted key order. (upb's own deterministic order is not byte order when one key is a
    prefix of another, so the bytes are compared only where no key is.)"""
    parsed = type(reference).FromString(record)
    assert parsed == reference
    if isinstance(reference, tf.train.Example):
        names = [list(ep.decode_example(record))]
    else:
        ctx, lists = ep.decode_sequence_example(record)
        names = [list(ctx), list(lists)]
    for keys in names:
        assert keys == sorted(keys)
        if not any(a != b and b.startswith(a) for a in keys for b in keys):
            assert record == reference.SerializeToString(deterministic=True)
    return parsed


def values_of(feature):
    which = feature.WhichOneof("kind")
    return which, list(getattr(feature, which).value) if which else []


# --- varints -------------------------------------------------------------------------------

def test_varint_parts_known_bytes():
    data, nbytes = ep.varint_parts(np.array([0, 1, 127, 128, 300, -1, 2**63 - 1, -2**63]))
    assert nbytes.tolist() == [1, 1, 1, 2, 2, 10, 9, 10]
    assert data.tobytes() == (b"\x00" b"\x01" b"\x7f" b"\x80\x01" b"\xac\x02"
                              + b"\xff" * 9 + b"\x01"
                              + b"\xff" * 8 + b"\x7f"
                              + b"\x80" * 9 + b"\x01")
    empty, counts = ep.varint_parts(np.zeros(0, dtype=np.int64))
    assert empty.tobytes() == b"" and counts.tolist() == []


def test_varint_parts_match_python_varint_over_every_length():
    values = [0] + [s * (2**b + o) for b in range(0, 63) for o in (-1, 0, 1) for s in (1, -1)
                    if -2**63 <= s * (2**b + o) < 2**63]
    data, nbytes = ep.varint_parts(np.array(values, dtype=np.int64))
    expected = b"".join(ep.varint(v & (2**64 - 1)) for v in values)
    assert data.tobytes() == expected
    assert nbytes.tolist() == [len(ep.varint(v & (2**64 - 1))) for v in values]


# --- tf.train.Example ----------------------------------------------------------------------

@requires_tf
def test_example_matches_tensorflow_bytes_and_values():
    features = {
        "ints": ("int64", np.array(INT64_EDGES, dtype=np.int64)),
        "py_ints": ("int64", INT64_EDGES),
        "floats": ("float", np.array([0.1, -2.5, 1e30, -0.0, 3.4028234663852886e38])),
        "text": ("bytes", ["héllo", "日本語", "", b"\x00\xff", "emoji \U0001F600"]),
        "scalar_int": ("int64", 7),
        "scalar_text": ("bytes", "one"),
        "no_ints": ("int64", []),
        "no_floats": ("float", np.zeros(0)),
        "no_bytes": ("bytes", []),
        "unicode_näme": ("int64", [3]),
    }
    record = ep.encode_example(features)
    decoded = same_as_tf(record, tf_example(features)).features.feature
    assert record == tf_example(features).SerializeToString(deterministic=True)
    assert sorted(decoded) == sorted(features)
    assert values_of(decoded["ints"]) == ("int64_list", INT64_EDGES)
    assert values_of(decoded["py_ints"]) == ("int64_list", INT64_EDGES)
    assert values_of(decoded["floats"]) == (
        "float_list", np.array([0.1, -2.5, 1e30, -0.0, 3.4028234663852886e38],
                               dtype=np.float32).astype(np.float64).tolist())
    assert np.signbit(decoded["floats"].float_list.value[3])
    assert values_of(decoded["text"]) == (
        "bytes_list", ["héllo".encode(), "日本語".encode(), b"", b"\x00\xff",
                       "emoji \U0001F600".encode()])
    assert values_of(decoded["scalar_int"]) == ("int64_list", [7])
    assert values_of(decoded["scalar_text"]) == ("bytes_list", [b"one"])
    assert values_of(decoded["no_ints"]) == ("int64_list", [])
    assert values_of(decoded["no_floats"]) == ("float_list", [])
    assert values_of(decoded["no_bytes"]) == ("bytes_list", [])
    assert values_of(decoded["unicode_näme"]) == ("int64_list", [3])


@requires_tf
def test_example_bytes_do_not_depend_on_key_order_and_many_keys_survive():
    keys = [f"f{i:04d}" for i in range(600)] + ["Z", "a", "é", "ß", ""]
    features = {k: ("int64", [i, -i]) for i, k in enumerate(keys)}
    shuffled = dict(sorted(features.items(), key=lambda kv: hash(kv[0]) % 97))
    record = ep.encode_example(features)
    assert record == ep.encode_example(shuffled)
    decoded = same_as_tf(record, tf_example(features)).features.feature
    assert list(ep.decode_example(record))[:3] == ["", "Z", "a"]
    assert {k: list(v.int64_list.value) for k, v in decoded.items()} == {
        k: [i, -i] for i, k in enumerate(keys)}


@requires_tf
def test_parse_example_batch_with_tensorflow_ops():
    records = [ep.encode_example({"id": ("int64", [i, -2**63 + i]),
                                  "score": ("float", [i / 3]),
                                  "name": ("bytes", [f"n{i}é"])}) for i in range(4)]
    parsed = tf.io.parse_example(tf.constant(records), {
        "id": tf.io.FixedLenFeature([2], tf.int64),
        "score": tf.io.FixedLenFeature([], tf.float32),
        "name": tf.io.FixedLenFeature([], tf.string)})
    assert parsed["id"].numpy().tolist() == [[i, -2**63 + i] for i in range(4)]
    assert parsed["score"].numpy().tolist() == np.array(
        [i / 3 for i in range(4)], dtype=np.float32).tolist()
    assert parsed["name"].numpy().tolist() == [f"n{i}é".encode() for i in range(4)]


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="kind"):
        ep.encode_example({"x": ("string", ["a"])})
    with pytest.raises(TypeError, match="integers"):
        ep.encode_example({"x": ("int64", np.array([1.5]))})
    with pytest.raises(TypeError, match="integers"):
        ep.encode_example({"x": ("int64", ["1"])})
    with pytest.raises(OverflowError):
        ep.encode_example({"x": ("int64", np.array([2**63], dtype=np.uint64))})
    with pytest.raises(OverflowError):
        ep.encode_example({"x": ("int64", [2**63, 1])})
    with pytest.raises(ValueError, match="1-D"):
        ep.encode_example({"x": ("int64", np.zeros((2, 2), dtype=np.int64))})
    with pytest.raises(TypeError, match="numbers"):
        ep.encode_example({"x": ("float", np.array(["a"]))})
    with pytest.raises(TypeError, match="str or bytes"):
        ep.encode_example({"x": ("bytes", [1])})
    with pytest.raises(ValueError, match="kind"):
        ep.encode_sequence_example({}, {"x": ("ints", [1])})


# --- tf.train.SequenceExample --------------------------------------------------------------

@requires_tf
def test_sequence_example_matches_tensorflow_and_parses():
    context = {"user_id": ("bytes", "üser"), "start_time": ("int64", [2**62 + 5]),
               "empty": ("float", [])}
    lists = {
        "article": ("int64", np.array([5, -1, 2**63 - 1, -2**63, 0], dtype=np.int64)),
        "seconds": ("float", np.array([0.0, 0.1, 59.999999, 1e-6, 3600.5])),
        "event": ("bytes", ["article_view", "chat_start", "article_view", "ß", ""]),
        "small": ("int64", np.array([1, 2, 3, 4, 5], dtype=np.int8)),
    }
    record = ep.encode_sequence_example(context, lists)
    same_as_tf(record, tf_sequence_example(context, lists))
    assert record == tf_sequence_example(context, lists).SerializeToString(deterministic=True)
    ctx, seq = tf.io.parse_single_sequence_example(
        record,
        context_features={"user_id": tf.io.FixedLenFeature([], tf.string),
                          "start_time": tf.io.FixedLenFeature([], tf.int64),
                          "empty": tf.io.VarLenFeature(tf.float32)},
        sequence_features={"article": tf.io.FixedLenSequenceFeature([], tf.int64),
                           "seconds": tf.io.FixedLenSequenceFeature([], tf.float32),
                           "event": tf.io.FixedLenSequenceFeature([], tf.string),
                           "small": tf.io.FixedLenSequenceFeature([], tf.int64)})
    assert ctx["user_id"].numpy() == "üser".encode()
    assert ctx["start_time"].numpy() == 2**62 + 5
    assert ctx["empty"].values.numpy().tolist() == []
    assert seq["article"].numpy().tolist() == [5, -1, 2**63 - 1, -2**63, 0]
    assert seq["seconds"].numpy().tolist() == np.array(
        [0.0, 0.1, 59.999999, 1e-6, 3600.5], dtype=np.float32).tolist()
    assert seq["event"].numpy().tolist() == [b"article_view", b"chat_start", b"article_view",
                                             "ß".encode(), b""]
    assert seq["small"].numpy().tolist() == [1, 2, 3, 4, 5]


@requires_tf
def test_sequence_example_steps_of_several_values_and_empty_steps():
    lists = {"multi": ("int64", [[1, 2], [], 3, np.array([-4, 2**40])]),
             "words": ("bytes", [["a", "b"], [], "c"]),
             "floats": ("float", [[0.5, 1.5], 2.0, []]),
             "none": ("int64", [])}
    record = ep.encode_sequence_example({}, lists)
    parsed = tf.train.SequenceExample.FromString(record)
    fl = parsed.feature_lists.feature_list
    assert [list(f.int64_list.value) for f in fl["multi"].feature] == [[1, 2], [], [3],
                                                                       [-4, 2**40]]
    assert [list(f.bytes_list.value) for f in fl["words"].feature] == [[b"a", b"b"], [], [b"c"]]
    assert [list(f.float_list.value) for f in fl["floats"].feature] == [[0.5, 1.5], [2.0], []]
    assert len(fl["none"].feature) == 0 and "none" in fl
    assert len(parsed.context.feature) == 0


def test_vectorised_and_step_by_step_feature_lists_give_the_same_bytes():
    rng = np.random.default_rng(11)
    ints = np.concatenate([rng.integers(-2**63, 2**63 - 1, 50, dtype=np.int64, endpoint=True),
                           rng.integers(-300, 300, 50), np.array(INT64_EDGES)])
    floats = rng.normal(0, 1e6, 100)
    assert ep.encode_feature_list("int64", ints) == ep.encode_feature_list(
        "int64", [int(v) for v in ints])
    assert ep.encode_feature_list("float", floats) == ep.encode_feature_list(
        "float", [float(v) for v in floats])
    assert ep.encode_feature_list("float", np.array([0.0, -0.0])) == ep.encode_feature_list(
        "float", [0.0, -0.0])
    assert ep.encode_feature_list("float", [0.0, -0.0]) != ep.encode_feature_list(
        "float", [0.0, 0.0])


def random_value(rng, kind, n):
    if kind == "int64":
        pick = rng.integers(0, 3, n)
        full = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64, endpoint=True)
        small = rng.integers(-1000, 1000, n)
        edges = rng.choice(np.array(INT64_EDGES, dtype=np.int64), n)
        return np.where(pick == 0, full, np.where(pick == 1, small, edges))
    if kind == "float":
        return (rng.normal(0, 10.0 ** rng.integers(-8, 30), n)).astype(np.float32)
    alphabet = list("abcxyzé日ß\U0001F600 ") + ["\x00"]
    return ["".join(rng.choice(alphabet, rng.integers(0, 8))) for _ in range(n)]


@requires_tf
def test_randomized_round_trip_against_tensorflow():
    rng = np.random.default_rng(20240611)
    for _ in range(60):
        kinds = rng.choice(["int64", "float", "bytes"], rng.integers(0, 12))
        context = {f"c{i}_{k}": (k, random_value(rng, k, int(rng.integers(0, 40))))
                   for i, k in enumerate(kinds)}
        lists = {}
        for i, k in enumerate(rng.choice(["int64", "float", "bytes"], rng.integers(0, 5))):
            steps = int(rng.integers(0, 30))
            if k != "bytes" and rng.random() < 0.5:
                lists[f"s{i}"] = (k, random_value(rng, k, steps))           # one value a step
            else:
                lists[f"s{i}"] = (k, [random_value(rng, k, int(rng.integers(0, 4)))
                                      for _ in range(steps)])
        example = ep.encode_example(context)
        same_as_tf(example, tf_example(context))
        record = ep.encode_sequence_example(context, lists)
        parsed = same_as_tf(record, tf_sequence_example(context, lists))
        for name, (kind, values) in context.items():
            got = values_of(parsed.context.feature[name])
            assert got == expected_values(kind, values)
        for name, (kind, steps) in lists.items():
            got = [values_of(f) for f in parsed.feature_lists.feature_list[name].feature]
            assert got == [expected_values(kind, np.atleast_1d(s) if kind != "bytes" else s)
                           for s in steps]
        # The plain-Python decoder reads TensorFlow's bytes the same way.
        ctx, seq = ep.decode_sequence_example(tf_sequence_example(context, lists)
                                              .SerializeToString())
        assert ctx == {n: (k, expected_values(k, v)[1]) for n, (k, v) in context.items()}
        assert seq == {n: (k if len(s) else None,
                           [expected_values(k, np.atleast_1d(x) if k != "bytes" else x)[1]
                            for x in s])
                       for n, (k, s) in lists.items()}
        assert ep.decode_example(tf_example(context).SerializeToString()) == {
            n: (k, expected_values(k, v)[1]) for n, (k, v) in context.items()}


def expected_values(kind, values):
    if kind == "int64":
        return "int64_list", [int(v) for v in values]
    if kind == "float":
        return "float_list", np.asarray(values, dtype=np.float32).astype(np.float64).tolist()
    return "bytes_list", [v.encode() for v in values]


@requires_tf
def test_decoder_reads_unpacked_lists_and_skips_unknown_fields():
    # Int64List / FloatList written unpacked (wire types 0 and 5), plus an unknown field 9.
    int64_list = b"\x08\x05" + b"\x08" + b"\xff" * 9 + b"\x01" + b"\x48\x07"
    float_list = b"\x0d" + np.float32(1.5).tobytes() + b"\x0d" + np.float32(-2).tobytes()
    features = (b"\x0a" + bytes([len(b"\x0a\x01i\x12") + 1 + 2 + len(int64_list)])
                + b"\x0a\x01i\x12" + bytes([2 + len(int64_list)]) + b"\x1a"
                + bytes([len(int64_list)]) + int64_list
                + b"\x0a" + bytes([len(b"\x0a\x01f\x12") + 1 + 2 + len(float_list)])
                + b"\x0a\x01f\x12" + bytes([2 + len(float_list)]) + b"\x12"
                + bytes([len(float_list)]) + float_list)
    record = b"\x0a" + bytes([len(features)]) + features + b"\x10\x01"
    reference = tf.train.Example.FromString(record).features.feature
    assert list(reference["i"].int64_list.value) == [5, -1]
    assert ep.decode_example(record) == {"i": ("int64", [5, -1]), "f": ("float", [1.5, -2.0])}
    with pytest.raises(ValueError, match="truncated"):
        ep.decode_example(record[:-4])


# --- the published feature specs parse the records with TensorFlow -------------------------

def parse_with_spec(record, spec):
    dtype = {"int64": tf.int64, "float32": tf.float32, "string": tf.string}
    assert spec["encoding"] == "tf.train.SequenceExample"
    ctx, seq = tf.io.parse_single_sequence_example(
        record,
        context_features={k: tf.io.FixedLenFeature(v["shape"], dtype[v["dtype"]])
                          for k, v in spec["context"].items()},
        sequence_features={k: tf.io.FixedLenSequenceFeature(v["shape"], dtype[v["dtype"]])
                           for k, v in spec["sequence"].items()})
    scalar = lambda x: x.item() if isinstance(x, np.generic) else x  # noqa: E731
    return ({k: scalar(v.numpy()) for k, v in ctx.items()},
            {k: v.numpy().tolist() for k, v in seq.items()})


@requires_tf
def test_sequence_records_parse_with_their_spec():
    from transforms.examples import sequences
    ids, records = sequences.sequence_records(
        np.array([0, 0, 0, 1, 2, 2]), np.array([4, 5, 6, 7, 8, 9]), np.array([1, 3, 2, 1, 2, 2]),
        np.array([10**15, 10**15 + 1_500_000, 10**15 + 4_000_000, 0, 5, 6]),
        ["u0", "u1", "ü2"], ["north", "", "日本"])
    assert ids.tolist() == [0, 2]
    assert parse_with_spec(records[0], sequences.SEQUENCE_FEATURE_SPEC) == (
        {"user_id": b"u0", "region_id": b"north", "label_article": 6, "start_time": 10**15},
        {"article": [4, 5], "event_name": [b"article_view", b"chat_start"],
         "seconds_since_prev": [0.0, 1.5]})
    assert parse_with_spec(records[1], sequences.SEQUENCE_FEATURE_SPEC) == (
        {"user_id": "ü2".encode(), "region_id": "日本".encode(), "label_article": 9,
         "start_time": 5},
        {"article": [8], "event_name": [b"article_like"], "seconds_since_prev": [0.0]})


@requires_tf
def test_ranking_records_parse_with_their_spec():
    from transforms.examples import ranking
    events = ["impression", "impression", "article_like", "search", "impression"]
    sides, keys, records = ranking.ranking_records(
        np.array([0, 0, 0, 0, 0]), np.array([100, 200, 250, 260, 300]), pa.array(events),
        np.array([11, 12, 12, 0, 13]), np.array([0, 0, 0, 0, 0], dtype=np.int8),
        pa.array(["home", "home", None, None, "home"]), np.array([4, 5, -1, -1, 6]),
        pa.array(["süd", None, "x", "x", "north"]), pa.array([None, None, "ios", "ios", None]),
        ["pseudo"], gap_us=1000, label_window_us=100, day_end_us=400, list_size=2)
    assert sides.tolist() == [0, 0] and keys.tolist() == [0, 4]
    assert parse_with_spec(records[0], ranking.RANKING_FEATURE_SPEC) == (
        {"user_id": b"pseudo", "region_id": "süd".encode(), "platform": b"",
         "surface": b"home", "start_time": 100},
        {"article": [11, 12], "position": [0, 1], "display_position": [4, 5],
         "label": [0, 2], "label_complete": [1, 1]})
    assert parse_with_spec(records[1], ranking.RANKING_FEATURE_SPEC) == (
        {"user_id": b"pseudo", "region_id": b"north", "platform": b"", "surface": b"home",
         "start_time": 300},
        {"article": [13], "position": [0], "display_position": [6], "label": [0],
         "label_complete": [0]})


# --- many records at once ----------------------------------------------------------------------

@requires_tf
def test_batch_encoding_equals_record_by_record_and_tensorflow():
    rng = np.random.default_rng(5)
    n = 40
    lengths = rng.integers(0, 6, n)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    steps = int(bounds[-1])
    context = {"user_id": ("bytes", [f"ü{i % 7}" for i in range(n)]),
               "start_time": ("int64", random_value(rng, "int64", n)),
               "weight": ("float", random_value(rng, "float", n))}
    lists = {"article": ("int64", random_value(rng, "int64", steps)),
             "seconds": ("float", random_value(rng, "float", steps)),
             "event": ("bytes", random_value(rng, "bytes", steps))}
    records = sp.encode_sequence_examples(context, lists, bounds)
    assert len(records) == n
    for i, record in enumerate(records):
        lo, hi = bounds[i], bounds[i + 1]
        ctx = {k: (kind, [v[i]]) for k, (kind, v) in context.items()}
        seq = {k: (kind, v[lo:hi]) for k, (kind, v) in lists.items()}
        assert record == ep.encode_sequence_example(ctx, seq)
        same_as_tf(record, tf_sequence_example(ctx, seq))
    assert sp.encode_sequence_examples({}, {}, [0]) == []
    with pytest.raises(ValueError, match="bounds"):
        sp.encode_sequence_examples({}, {}, [1, 2])
    with pytest.raises(ValueError, match="3 values for 2 records"):
        sp.encode_sequence_examples({"x": ("int64", [1, 2, 3])}, {}, [0, 0, 0])
    with pytest.raises(ValueError, match="2 steps, bounds end at 3"):
        sp.encode_sequence_examples({}, {"x": ("int64", [1, 2])}, [0, 3])


# --- the vectorised batch encoder gives the bytes of the record-by-record one ------------------

def _scalar_pieces_reference(kind, values, wrap):
    """The per-value pieces of the encoder before it was vectorised across records."""
    if kind == "float":
        head = (b"\x0a\x08" if wrap else b"") + b"\x12\x06\x0a\x04"
        floats = np.frombuffer(ep.float_bytes(values), dtype=np.uint8).reshape(-1, 4)
        out = np.empty((len(floats), len(head) + 4), dtype=np.uint8)
        out[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
        out[:, len(head):] = floats
        return out.tobytes(), np.arange(len(floats) + 1, dtype=np.int64) * out.shape[1]
    if kind == "int64":
        data, nbytes = ep.varint_parts(ep.int64_array(values))
        h = 6 if wrap else 4
        size = nbytes + h
        offsets = np.zeros(len(size) + 1, dtype=np.int64)
        np.cumsum(size, out=offsets[1:])
        at = offsets[:-1]
        out = np.empty(int(offsets[-1]), dtype=np.uint8)
        if wrap:
            out[at] = 0x0A
            out[at + 1] = nbytes + 4
            at = at + 2
        out[at] = 0x1A
        out[at + 1] = nbytes + 2
        out[at + 2] = 0x0A
        out[at + 3] = nbytes
        data_starts = np.cumsum(nbytes) - nbytes
        out[np.repeat(at + 4 - data_starts, nbytes) + np.arange(len(data))] = data
        return out.tobytes(), offsets
    if kind != "bytes":
        raise ValueError(f"feature kind must be one of {ep.KINDS}, got {kind!r}")
    pieces, seen = [], {}
    for v in ep.bytes_items(values):
        piece = seen.get(v)
        if piece is None:
            feature = ep.encode_feature("bytes", (v,))
            piece = seen[v] = ep.FIELD_1 + ep.varint(len(feature)) + feature if wrap else feature
        pieces.append(piece)
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    return b"".join(pieces), offsets


def _encode_sequence_examples_reference(context, feature_lists, bounds):
    """encode_sequence_examples as it was before it was vectorised across records: Python
    code per record joining per-value pieces."""
    bounds = np.asarray(bounds, dtype=np.int64)
    if bounds.ndim != 1 or len(bounds) == 0 or bounds[0] != 0 or np.any(np.diff(bounds) < 0):
        raise ValueError("bounds must be non-decreasing offsets starting at 0")
    n = len(bounds) - 1
    ctx_columns = []
    for name in sorted(context):
        kind, values = context[name]
        data, offsets = _scalar_pieces_reference(kind, values, wrap=False)
        if len(offsets) - 1 != n:
            raise ValueError(f"context feature {name!r} has {len(offsets) - 1} values for "
                             f"{n} records")
        ctx_columns.append((ep.key_head(name), data, offsets.tolist()))
    list_columns = []
    for name in sorted(feature_lists):
        kind, steps = feature_lists[name]
        data, offsets = _scalar_pieces_reference(kind, steps, wrap=True)
        if len(offsets) - 1 != bounds[-1]:
            raise ValueError(f"feature list {name!r} has {len(offsets) - 1} steps, bounds "
                             f"end at {bounds[-1]}")
        list_columns.append((ep.key_head(name), data, offsets[bounds].tolist()))
    records = []
    for i in range(n):
        ctx = b"".join([ep._entry(head, data[o[i]:o[i + 1]]) for head, data, o in ctx_columns])
        lists = b"".join([ep._entry(head, data[o[i]:o[i + 1]])
                          for head, data, o in list_columns])
        records.append(ep.FIELD_1 + ep.varint(len(ctx)) + ctx + ep._FIELD_2
                       + ep.varint(len(lists)) + lists)
    return records


_ALPHABET = list("abcxyzé日ß\U0001F600 ") + ["\x00"]


def _random_column(rng, kind, n, style):
    """n values of `kind` in one of several shapes and containers."""
    if kind == "int64":
        if style == 0:                                   # every varint size, negatives
            return random_value(rng, "int64", n)
        if style == 1:                                   # one varint size: 0..127
            return rng.integers(0, 128, n)
        if style == 2:                                   # Python ints, near the edges
            return [int(v) for v in rng.choice(np.array(INT64_EDGES, dtype=np.int64), n)]
        return rng.integers(-1, 2, n).astype(np.int8)    # a narrow dtype, -1 takes 10 bytes
    if kind == "float":
        if style == 0:
            return random_value(rng, "float", n)
        if style == 1:
            return [float(v) for v in rng.normal(0, 1e3, n)]
        values = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38]), n)
        return values if style == 2 else values.astype(np.float32)
    if style == 0:                                       # unicode str, some empty
        return random_value(rng, "bytes", n)
    if style == 1:                                       # bytes and str, some long
        return [bytes(rng.integers(0, 256, int(rng.choice([0, 1, 5, 127, 128, 300]))).astype(
            np.uint8)) if rng.random() < 0.5 else "".join(rng.choice(_ALPHABET, 40))
            for _ in range(n)]
    if style == 2:                                       # ASCII of one length, a tuple
        return tuple(f"{int(v):064x}" for v in rng.integers(0, 2**62, n))
    return np.array(random_value(rng, "bytes", n), dtype=object if style == 3 else str)


def _random_batch(rng):
    n = int(rng.choice([0, 1, 2, 7, 50, 300]))
    shape = rng.integers(0, 4)
    if shape == 0:
        lengths = rng.integers(0, 8, n)                  # some records without steps
    elif shape == 1:
        lengths = np.ones(n, dtype=np.int64)             # one step each
    elif shape == 2:
        lengths = np.zeros(n, dtype=np.int64)            # no steps at all
    else:
        lengths = rng.integers(0, 3, n) * rng.integers(0, 2, n) * 40   # long lists
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    steps = int(bounds[-1])
    kinds = ["int64", "float", "bytes"]
    context = {f"c{i}_{'é' if i % 3 else ''}{k}": (k, _random_column(rng, k, n,
                                                                      rng.integers(0, 4)))
               for i, k in enumerate(rng.choice(kinds, rng.integers(0, 6)))}
    lists = {f"s{i}_{k}" * int(rng.integers(1, 3)): (k, _random_column(rng, k, steps,
                                                                       rng.integers(0, 4)))
             for i, k in enumerate(rng.choice(kinds, rng.integers(0, 6)))}
    return context, lists, bounds


def test_batch_encoder_gives_the_reference_bytes_over_random_shapes():
    rng = np.random.default_rng(20240612)
    for _ in range(300):
        context, lists, bounds = _random_batch(rng)
        got = sp.encode_sequence_examples(context, lists, bounds)
        assert got == _encode_sequence_examples_reference(context, lists, bounds)
        assert all(type(r) is bytes for r in got)


def test_batch_encoder_gives_the_reference_bytes_for_big_entries():
    # Entries, lists and records long enough for 2- and 3-byte length varints.
    rng = np.random.default_rng(3)
    lengths = np.array([0, 1, 2000, 3, 9000, 0, 17000])
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    steps = int(bounds[-1])
    n = len(lengths)
    context = {"big": ("bytes", ["x" * 20000, "", "ü" * 100, b"\xff" * 127, "y" * 128,
                                 "z" * 16383, "w" * 16384]),
               "id": ("int64", rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64,
                                            endpoint=True))}
    lists = {"a": ("int64", random_value(rng, "int64", steps)),
             "b": ("bytes", random_value(rng, "bytes", steps)),
             "f": ("float", random_value(rng, "float", steps)),
             "one": ("int64", np.full(steps, 3))}
    got = sp.encode_sequence_examples(context, lists, bounds)
    assert got == _encode_sequence_examples_reference(context, lists, bounds)
    for i, record in enumerate(got):
        ctx, seq = ep.decode_sequence_example(record)
        assert len(seq["a"][1]) == lengths[i]


def test_batch_encoder_refuses_what_the_reference_refuses():
    cases = [
        ({"x": ("string", ["a"])}, {}, [0, 0]),
        ({}, {"x": ("ints", [1])}, [0, 1]),
        ({"x": ("int64", np.array([1.5]))}, {}, [0, 0]),
        ({"x": ("int64", np.array([2**63], dtype=np.uint64))}, {}, [0, 0]),
        ({"x": ("float", np.array(["a"]))}, {}, [0, 0]),
        ({"x": ("bytes", [1])}, {}, [0, 0]),
        ({"x": ("bytes", ["a", None])}, {}, [0, 0, 0]),
        ({"x": ("bytes", ["a", memoryview(b"b")])}, {}, [0, 0, 0]),
        ({}, {"x": ("int64", [[1, 2]])}, [0, 1]),
        ({"x": ("int64", [1, 2, 3])}, {}, [0, 0, 0]),
        ({}, {"x": ("int64", [1, 2])}, [0, 3]),
        ({}, {}, [1, 2]),
        ({}, {}, [0, 2, 1]),
    ]
    for context, lists, bounds in cases:
        with pytest.raises((ValueError, TypeError, OverflowError)) as expected:
            _encode_sequence_examples_reference(context, lists, bounds)
        with pytest.raises(expected.type, match=re.escape(str(expected.value))):
            sp.encode_sequence_examples(context, lists, bounds)
