"""Publishing (tier 1): TFRecord framing and its CRC32C, Example encoding, finding the
latest published day and reading a published article index. The publishing protocol
itself is tested in tests/publishing/test_publish_protocol.py."""

import gzip
import re
import struct

import numpy as np
import pyarrow as pa
import pytest

from transforms.publishing import tfrecord
from transforms.publishing.protocol import publish_day
from transforms.publishing.readers import load_index
from transforms.publishing.tfrecord import as_feature_lists, decode_examples, \
    encode_examples, feature_spec, read_tfrecord_bytes, read_tfrecord_file, tfrecord_frame
from transforms.publishing.writers import write_piece

pytestmark = pytest.mark.functions

RUNNER = "FnApiRunner"


# ---------------------------------------------------------------------- CRC32C and framing

def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_reference(crc: int) -> int:
    """TFRecord's mask: rotate right by 15 bits, add 0xa282ead8, modulo 2**32."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) & 0xFFFFFFFF


def frame_reference(records):
    out = b""
    for r in records:
        length = struct.pack("<Q", len(r))
        out += length + struct.pack("<I", masked_reference(crc32c_reference(length)))
        out += r + struct.pack("<I", masked_reference(crc32c_reference(r)))
    return out


def test_crc32c_known_vector_and_mask():
    assert crc32c_reference(b"123456789") == 0xE3069283
    assert tfrecord._crc32c(b"123456789") == 0xE3069283
    assert tfrecord._crc32c(b"") == 0
    # 0xE3069283 rotated right by 15 is 0x2507C60D; plus 0xA282EAD8 is 0xC78AB0E5.
    assert masked_reference(0xE3069283) == 0xC78AB0E5
    assert tfrecord._masked(0xE3069283) == 0xC78AB0E5
    for crc in (0, 1, 0x7FFF, 0x8000, 0xFFFFFFFF, 0x12345678):
        assert tfrecord._masked(crc) == masked_reference(crc), hex(crc)


def test_tfrecord_frame_matches_the_format():
    records = [b"123456789", b"", b"\x00" * 300, "é".encode()]
    framed = tfrecord_frame(records)
    assert framed == frame_reference(records)
    assert len(framed) == sum(16 + len(r) for r in records)
    assert framed[:8] == struct.pack("<Q", 9)
    assert framed[12:21] == b"123456789"
    assert framed[21:25] == struct.pack("<I", 0xC78AB0E5)
    assert read_tfrecord_bytes(framed) == records
    assert tfrecord_frame([]) == b""
    assert read_tfrecord_bytes(b"") == []


ORIGIN = "gs://bucket/out/edges-00000-of-00004.tfrecord.gz"


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: flip(d, 0), "bad length CRC at byte 0"),          # length
    (lambda d: flip(d, 9), "bad length CRC at byte 0"),          # length CRC
    (lambda d: flip(d, 12), "bad data CRC at byte 12"),          # first data byte
    (lambda d: flip(d, 22), "bad data CRC at byte 12"),          # data CRC
    (lambda d: flip(d, 25 + 12), "bad data CRC at byte 37"),     # second record's data
    (lambda d: d[:24], "truncated TFRecord at byte 0"),
    (lambda d: d[:10], "truncated TFRecord header at byte 0"),
    (lambda d: d[:25 + 13], "truncated TFRecord at byte 25"),
])
def test_corruption_raises_naming_the_origin(corrupt, message):
    data = tfrecord_frame([b"123456789", b"abc"])
    assert read_tfrecord_bytes(data) == [b"123456789", b"abc"]
    with pytest.raises(ValueError, match="^" + re.escape(f"{ORIGIN}: {message}") + "$"):
        read_tfrecord_bytes(corrupt(data), ORIGIN)


def test_read_tfrecord_file_gzip_and_plain(tmp_path):
    data = tfrecord_frame([b"one", b"two" * 1000])
    packed = gzip.compress(data)
    path = tmp_path / "x.tfrecord.gz"
    path.write_bytes(packed)
    assert read_tfrecord_file(str(path)) == [b"one", b"two" * 1000]
    plain = tmp_path / "x.tfrecord"
    plain.write_bytes(data)
    assert read_tfrecord_file(str(plain)) == [b"one", b"two" * 1000]
    bad = tmp_path / "bad.tfrecord.gz"
    bad.write_bytes(gzip.compress(flip(data, 13)))
    with pytest.raises(ValueError, match="^" + re.escape(f"{bad}: bad data CRC at byte 12")):
        read_tfrecord_file(str(bad))


# ---------------------------------------------------------------------- Examples

def examples_batch():
    return pa.RecordBatch.from_arrays([
        pa.array([1, None, -3], pa.int64()),
        pa.array([0.5, 1.25, None], pa.float32()),
        pa.array([b"x", None, "é".encode()], pa.binary()),
        pa.array([[1, 2], [], [7]], pa.list_(pa.int64())),
        pa.array([[0.25], [0.5, -1.0], []], pa.list_(pa.float32())),
        pa.array([[b"a"], [b"b", b""], []], pa.list_(pa.binary())),
    ], ["i", "f", "b", "li", "lf", "lb"])


def test_as_feature_lists_wraps_scalars_and_empties_nulls():
    lists = as_feature_lists(examples_batch())
    assert lists.schema.names == ["i", "f", "b", "li", "lf", "lb"]
    assert [str(t) for t in lists.schema.types] == [
        "list<item: int64>", "list<item: float>", "list<item: binary>",
        "list<item: int64>", "list<item: float>", "list<item: binary>"]
    assert lists.to_pylist() == [
        {"i": [1], "f": [0.5], "b": [b"x"], "li": [1, 2], "lf": [0.25], "lb": [b"a"]},
        {"i": [], "f": [1.25], "b": [], "li": [], "lf": [0.5, -1.0], "lb": [b"b", b""]},
        {"i": [-3], "f": [], "b": ["é".encode()], "li": [7], "lf": [], "lb": []},
    ]
    # A sliced input (non-zero offset) keeps the right rows.
    assert as_feature_lists(examples_batch().slice(1, 2)).column(0).to_pylist() == [[], [-3]]


def test_examples_round_trip():
    batch = examples_batch()
    records = encode_examples(batch)
    assert len(records) == 3 and all(isinstance(r, bytes) for r in records)
    decoded = decode_examples(records)
    rows = decoded.to_pylist()
    assert [sorted(r) for r in rows] == [["b", "f", "i", "lb", "lf", "li"]] * 3
    assert rows == as_feature_lists(batch).to_pylist()
    # Through the framing and gzip too, as the published files carry them.
    framed = gzip.compress(tfrecord_frame(records))
    assert decode_examples(read_tfrecord_bytes(gzip.decompress(framed))).to_pylist() == rows
    assert encode_examples(batch.slice(0, 0)) == []


def test_feature_spec():
    assert feature_spec(examples_batch().schema) == {
        "i": {"kind": "int64_list", "shape": "[1]"},
        "f": {"kind": "float_list", "shape": "[1]"},
        "b": {"kind": "bytes_list", "shape": "[1]"},
        "li": {"kind": "int64_list", "shape": "variable"},
        "lf": {"kind": "float_list", "shape": "variable"},
        "lb": {"kind": "bytes_list", "shape": "variable"},
    }
    assert feature_spec(pa.schema([("s", pa.string()), ("d", pa.float64()),
                                   ("n", pa.int32()),
                                   ("ll", pa.large_list(pa.large_binary()))])) == {
        "s": {"kind": "bytes_list", "shape": "[1]"},
        "d": {"kind": "float_list", "shape": "[1]"},
        "n": {"kind": "int64_list", "shape": "[1]"},
        "ll": {"kind": "bytes_list", "shape": "variable"},
    }


def test_encode_examples_writes_the_kinds_feature_spec_promises():
    # BUG: feature_spec describes a string column as bytes_list, float64 as float_list
    # and int32 as int64_list, but tfx-bsl's encoder only takes int64, float32 and
    # (large_)binary values: encode_examples raises RuntimeError "Bad field type" for
    # the others, on a worker, after the stage has started. Fix: in as_feature_lists,
    # cast list values to the encoder's types (integers -> int64, floating -> float32,
    # string/large_string -> binary/large_binary) before building the lists.
    batch = pa.RecordBatch.from_arrays([
        pa.array(["x", None, "é"], pa.string()),
        pa.array([0.5, 1.5, None], pa.float64()),
        pa.array([1, 2, None], pa.int32()),
    ], ["s", "d", "n"])
    assert decode_examples(encode_examples(batch)).to_pylist() == [
        {"s": [b"x"], "d": [0.5], "n": [1]},
        {"s": [], "d": [1.5], "n": [2]},
        {"s": ["é".encode()], "d": [], "n": []},
    ]


# ---------------------------------------------------------------------- naming

def write_index(day_dir, parts, success=True):
    """An index file set under day_dir (one piece per part of (ids, indexes)), published
    unless success is False (then the files are there but no manifest names them)."""
    records = []
    for shard, (ids, index) in enumerate(parts):
        batch = pa.RecordBatch.from_arrays(
            [pa.array([i.encode() for i in ids], pa.binary()), pa.array(index, pa.int64())],
            ["article_id", "index"])
        records += write_piece(day_dir, "r1", "tfrecord", "index", shard, batch, 1 << 20)
    if success:
        publish_day(day_dir, "r1", records, {}, file_sets=("index",))


def as_lists(index):
    ids, values = index
    assert ids.type == pa.string() and values.dtype == np.int64
    return ids.to_pylist(), values.tolist()


def test_load_index(tmp_path):
    day = str(tmp_path / "dt=2026-11-25")
    write_index(day, [(["a", "b", "한"], [3, 1, 2]), ([], []), (["x"], [10])])
    # Files in name order, rows in file order; an empty piece writes no file.
    assert as_lists(load_index(day)) == (["a", "b", "한", "x"], [3, 1, 2, 10])
    assert as_lists(load_index(day + "/")) == (["a", "b", "한", "x"], [3, 1, 2, 10])
    only_empty = str(tmp_path / "empty")
    write_index(only_empty, [([], [])])
    assert as_lists(load_index(only_empty)) == ([], [])
    # Files lying in the folder but listed by no manifest are not a published index.
    unpublished = str(tmp_path / "unpublished")
    write_index(unpublished, [(["a"], [1])], success=False)
    for folder in (unpublished, str(tmp_path / "none")):
        with pytest.raises(FileNotFoundError, match=f"^{folder} has no _SUCCESS: no day is "
                                                    "published there$"):
            load_index(folder)
