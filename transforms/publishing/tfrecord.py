"""TFRecord framing (length, masked CRC32C) and the tf.train.Example codec of Arrow
batches (tfx-bsl's C++ encoder, no TensorFlow import) (docs/publishing.md).
"""

import gzip
import struct
from typing import Dict, List, Sequence

import google_crc32c
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.coders import example_coder

GZIP_LEVEL = 1   # fastest; level 6 saves about 3% on these records
_MASK_DELTA = 0xA282EAD8


def _crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord_frame(records: Sequence[bytes]) -> bytes:
    """TFRecord framing of serialized records: for each, uint64 length, masked
    CRC32C of the length, the data, masked CRC32C of the data (little endian)."""
    value = google_crc32c.value
    pack_crc = struct.Struct("<I").pack
    pack_len = struct.Struct("<Q").pack
    header_of = {}
    parts: List[bytes] = []
    append = parts.append
    for record in records:
        length = len(record)
        head = header_of.get(length)
        if head is None:
            packed = pack_len(length)
            head = header_of[length] = packed + pack_crc(_masked(value(packed)))
        crc = value(record)
        append(head)
        append(record)
        append(pack_crc((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF))
    return b"".join(parts)


def read_tfrecord_bytes(data: bytes, origin: str = "<bytes>") -> List[bytes]:
    """Parse TFRecord framing, checking every CRC; raises naming `origin` on corruption."""
    records, pos, n = [], 0, len(data)
    while pos < n:
        if pos + 12 > n:
            raise ValueError(f"{origin}: truncated TFRecord header at byte {pos}")
        length_bytes = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if crc != _masked(_crc32c(length_bytes)):
            raise ValueError(f"{origin}: bad length CRC at byte {pos}")
        start, end = pos + 12, pos + 12 + length
        if end + 4 > n:
            raise ValueError(f"{origin}: truncated TFRecord at byte {pos}")
        record = data[start:end]
        (crc,) = struct.unpack("<I", data[end:end + 4])
        if crc != _masked(_crc32c(record)):
            raise ValueError(f"{origin}: bad data CRC at byte {start}")
        records.append(record)
        pos = end + 4
    return records


def read_tfrecord_file(path: str) -> List[bytes]:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        raw = handle.read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    return read_tfrecord_bytes(raw, path)


def example_value_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a tf.train.Example feature of values of type `t` is encoded from
    (the encoder takes int64, float32 and binary values only)."""
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float32()
    if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        return pa.large_binary()
    return pa.binary()


def as_feature_lists(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Wrap scalar columns in one-element lists (what the Example encoder wants);
    null scalars become empty lists; values cast to the encoder's types."""
    arrays = []
    for column in batch.columns:
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            value_type = example_value_type(column.type.value_type)
            if value_type != column.type.value_type:
                list_type = pa.list_(value_type) if pa.types.is_list(column.type) else \
                    pa.large_list(value_type)
                column = column.cast(list_type)
            arrays.append(column)
            continue
        column = column.cast(example_value_type(column.type))
        n = len(column)
        valid = np.ones(n, dtype=bool) if column.null_count == 0 else \
            column.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(valid, out=offsets[1:])
        values = column.filter(pa.array(valid)) if column.null_count else column
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets), values))
    return pa.RecordBatch.from_arrays(arrays, batch.schema.names)


def encode_examples(batch: pa.RecordBatch) -> List[bytes]:
    """RecordBatch -> serialized tf.train.Example, one per row."""
    if batch.num_rows == 0:
        return []
    return example_coder.RecordBatchToExamplesEncoder().encode(as_feature_lists(batch))


def decode_examples(records: Sequence[bytes]) -> pa.RecordBatch:
    return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(records))


def feature_spec(batch_schema: pa.Schema) -> Dict[str, Dict]:
    """A readable description of each feature: its tf.train.Example kind and shape."""
    spec = {}
    for field in batch_schema:
        t = field.type
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
        base = t.value_type if is_list else t
        if pa.types.is_integer(base) or pa.types.is_boolean(base):
            kind = "int64_list"
        elif pa.types.is_floating(base):
            kind = "float_list"
        else:
            kind = "bytes_list"
        spec[field.name] = {"kind": kind, "shape": "variable" if is_list else "[1]"}
    return spec
