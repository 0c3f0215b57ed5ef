"""tf.train.Example and tf.train.SequenceExample in protobuf wire format, without TensorFlow.

The messages (tensorflow/core/example/example.proto and feature.proto):

    Feature        oneof bytes_list = 1 | float_list = 2 | int64_list = 3
    BytesList      repeated bytes value = 1
    FloatList      repeated float value = 1 [packed]
    Int64List      repeated int64 value = 1 [packed]
    Features       map<string, Feature> feature = 1
    Example        Features features = 1
    FeatureList    repeated Feature feature = 1
    FeatureLists   map<string, FeatureList> feature_list = 1
    SequenceExample  Features context = 1; FeatureLists feature_lists = 2

A feature value is a pair (kind, values): kind is "int64", "float" or "bytes";
values a numpy array, a Python sequence or a scalar (str is encoded as UTF-8).
Map entries are written in sorted key order, so equal inputs give equal bytes
(the bytes protobuf's deterministic serialisation gives). Integer lists are
encoded as varints a whole array at a time; feature lists whose steps are the
scalars of a 1-D numeric array are encoded a whole list at a time.

This is the scalar codec: one Example, Feature, FeatureList or SequenceExample at a
time, and the plain-Python decoder. Many SequenceExamples at once, vectorised across
records, are transforms/examples/sequence_proto.py (`encode_sequence_examples`).
"""

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

KINDS = ("int64", "float", "bytes")

# Feature's oneof fields, tag bytes (field << 3 | 2: length-delimited).
FEATURE_TAG = {"bytes": b"\x0a", "float": b"\x12", "int64": b"\x1a"}
FIELD_1 = b"\x0a"
_FIELD_2 = b"\x12"

_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_INT64_MAX = np.iinfo(np.int64).max


def varint(n: int) -> bytes:
    """Varint of a non-negative Python int (lengths, mostly)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_parts(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Varints of int64 values (negatives as 10-byte two's complement), whole array at once.

    Returns (the varints concatenated, uint8; the byte count of each value, int64)."""
    u = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    nbytes = varint_size(u)
    ends = np.cumsum(nbytes)
    total = int(ends[-1]) if len(ends) else 0
    j = np.arange(total, dtype=np.int64) - np.repeat(ends - nbytes, nbytes)
    data = ((np.repeat(u, nbytes) >> _SHIFTS[j]) & np.uint64(0x7F)).astype(np.uint8)
    data |= np.uint8(0x80)
    data[ends - 1] &= np.uint8(0x7F)
    return data, nbytes


def varint_size(n: np.ndarray) -> np.ndarray:
    """Byte counts of the varints of int64 values (negatives: 10, two's complement)."""
    u = n.view(np.uint64) if n.dtype == np.int64 else n
    size = np.ones(len(u), dtype=np.int64)
    if len(u):
        top = int(u.max())
        for shift in range(7, 64, 7):
            if top < 1 << shift:
                break
            size += u >= np.uint64(1 << shift)
    return size


def int64_array(values) -> np.ndarray:
    if isinstance(values, (list, tuple)):
        # Not np.asarray: it would turn [2**63, 1] into floats.
        if not all(isinstance(v, (int, np.integer, np.bool_)) for v in values):
            raise TypeError(f"int64 feature values must be integers, got {values[:3]!r}")
        return np.array([int(v) for v in values], dtype=np.int64)  # OverflowError past int64
    arr = np.asarray(values)
    if arr.ndim > 1:
        raise ValueError(f"int64 feature values must be a scalar or 1-D, got shape {arr.shape}")
    arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    kind = arr.dtype.kind
    if kind in "ib":
        return arr.astype(np.int64, copy=False)
    if kind == "u":
        if arr.dtype.itemsize == 8 and int(arr.max()) > _INT64_MAX:
            raise OverflowError(f"int64 feature value {int(arr.max())} is above 2**63 - 1")
        return arr.astype(np.int64)
    if kind == "O" and all(isinstance(v, (int, np.integer, np.bool_)) for v in arr):
        return np.array([int(v) for v in arr], dtype=np.int64)   # OverflowError past int64
    raise TypeError(f"int64 feature values must be integers, got {arr.dtype} {arr[:3]!r}")


def float_bytes(values) -> bytes:
    arr = np.asarray(values)
    if arr.ndim > 1:
        raise ValueError(f"float feature values must be a scalar or 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return b""
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"float feature values must be numbers, got {arr.dtype}")
    return arr.reshape(-1).astype("<f4").tobytes()


def bytes_items(values):
    if isinstance(values, (str, bytes, np.bytes_)):
        values = (values,)
    elif isinstance(values, np.ndarray) and values.ndim == 0:
        values = (values.item(),)
    for v in values:
        if isinstance(v, str):
            yield v.encode("utf-8")
        elif isinstance(v, (bytes, bytearray)):
            yield bytes(v)
        else:
            raise TypeError(f"bytes feature values must be str or bytes, got {type(v).__name__}")


def _packed(data: bytes) -> bytes:
    # An empty packed field is not written at all (as protobuf does).
    return FIELD_1 + varint(len(data)) + data if data else b""


def encode_feature(kind: str, values) -> bytes:
    """A serialized tf.train.Feature holding `values` as a list of `kind`."""
    if kind == "int64":
        body = _packed(varint_parts(int64_array(values))[0].tobytes())
    elif kind == "float":
        body = _packed(float_bytes(values))
    elif kind == "bytes":
        body = b"".join([FIELD_1 + varint(len(v)) + v for v in bytes_items(values)])
    else:
        raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")
    return FEATURE_TAG[kind] + varint(len(body)) + body


def _map(entries: Mapping[str, bytes]) -> bytes:
    """Map field 1 (string key = 1, message value = 2), entries in sorted key order."""
    return b"".join([_entry(key_head(key), entries[key]) for key in sorted(entries)])


def _features(features: Mapping[str, Tuple[str, object]]) -> bytes:
    return _map({name: encode_feature(kind, values)
                 for name, (kind, values) in features.items()})


def encode_example(features: Dict[str, Tuple[str, object]]) -> bytes:
    """A serialized tf.train.Example: {name: (kind, values)}."""
    body = _features(features)
    return FIELD_1 + varint(len(body)) + body


def _scalar_pieces(kind: str, values, wrap: bool) -> Tuple[bytes, np.ndarray]:
    """Each value as a one-value Feature (wrap: as a FeatureList element, `0a len Feature`),
    all concatenated; and the byte offsets of the pieces (n + 1 of them).
    Numbers are encoded a whole array at a time."""
    if kind == "float":
        # [0a 08] 12 06 0a 04 float32
        head = (b"\x0a\x08" if wrap else b"") + b"\x12\x06\x0a\x04"
        floats = np.frombuffer(float_bytes(values), dtype=np.uint8).reshape(-1, 4)
        out = np.empty((len(floats), len(head) + 4), dtype=np.uint8)
        out[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
        out[:, len(head):] = floats
        return out.tobytes(), np.arange(len(floats) + 1, dtype=np.int64) * out.shape[1]
    if kind == "int64":
        # [0a k+4] 1a k+2 0a k varint(k bytes)
        data, nbytes = varint_parts(int64_array(values))
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
        raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")
    pieces, seen = [], {}
    for v in bytes_items(values):
        piece = seen.get(v)
        if piece is None:
            feature = encode_feature("bytes", (v,))
            piece = seen[v] = FIELD_1 + varint(len(feature)) + feature if wrap else feature
        pieces.append(piece)
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    return b"".join(pieces), offsets


def encode_feature_list(kind: str, steps) -> bytes:
    """A serialized tf.train.FeatureList: one Feature per step (a scalar or a sequence)."""
    if kind not in KINDS:
        raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")
    if (isinstance(steps, np.ndarray) and steps.ndim == 1 and kind != "bytes"
            and steps.dtype.kind in "iubf"):
        return _scalar_pieces(kind, steps, wrap=True)[0]
    parts = []
    seen: Dict[object, bytes] = {}
    for step in steps:
        # Floats are not cached: 0.0 == -0.0 but their bytes differ.
        hashable = isinstance(step, (str, bytes, int, np.integer))
        entry = seen.get((type(step), step)) if hashable else None
        if entry is None:
            feature = encode_feature(kind, step)
            entry = FIELD_1 + varint(len(feature)) + feature
            if hashable:
                seen[(type(step), step)] = entry
        parts.append(entry)
    return b"".join(parts)


def encode_sequence_example(context: Dict[str, Tuple[str, object]],
                            feature_lists: Dict[str, Tuple[str, Sequence]]) -> bytes:
    """A serialized tf.train.SequenceExample: context {name: (kind, values)} and
    feature lists {name: (kind, [values of step 0, values of step 1, ...])}."""
    ctx = _features(context)
    lists = _map({name: encode_feature_list(kind, steps)
                  for name, (kind, steps) in feature_lists.items()})
    return FIELD_1 + varint(len(ctx)) + ctx + _FIELD_2 + varint(len(lists)) + lists


# ---------------------------------------------------------------------------------------------
# Decoding (plain Python): for tests and checks of written files, not for bulk reading.

_KIND_OF_FIELD = {1: "bytes", 2: "float", 3: "int64"}


def _read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes):
    """(field number, wire type, value) of each field: an int for varints, bytes otherwise."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > n:
            raise ValueError("truncated message")
        yield field, wire, value


def _last_fields(buf: bytes, count: int) -> List[bytes]:
    """The value of each length-delimited field 1..count of a message, the last one
    where a field repeats, b"" where it is absent."""
    values = [b""] * count
    for field, wire, value in _fields(buf):
        if wire == 2 and 1 <= field <= count:
            values[field - 1] = value
    return values


def _signed(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_feature(buf: bytes) -> Tuple[object, list]:
    """(kind, values) of a serialized tf.train.Feature; kind None when no list is set.
    Floats come back as Python floats holding the float32 values exactly."""
    kind, values = None, []
    for field, wire, body in _fields(buf):
        if field not in _KIND_OF_FIELD or wire != 2:
            continue
        kind, values = _KIND_OF_FIELD[field], []      # the last oneof member wins
        for f, w, v in _fields(body):
            if f != 1:
                continue
            if kind == "bytes":
                values.append(bytes(v))
            elif kind == "float":
                data = v if w in (2, 5) else b""
                values.extend(np.frombuffer(data, dtype="<f4").astype(np.float64).tolist())
            elif w == 0:
                values.append(_signed(v))
            elif w == 2:
                p = 0
                while p < len(v):
                    x, p = _read_varint(v, p)
                    values.append(_signed(x))
    return kind, values


def _decode_map(buf: bytes) -> Dict[str, bytes]:
    out = {}
    for field, wire, entry in _fields(buf):
        if field != 1 or wire != 2:
            continue
        key, value = _last_fields(entry, 2)
        out[bytes(key).decode("utf-8")] = value
    return out


def _decode_features(buf: bytes) -> Dict[str, Tuple[object, list]]:
    return {name: decode_feature(v) for name, v in _decode_map(buf).items()}


def decode_example(record: bytes) -> Dict[str, Tuple[object, list]]:
    """{name: (kind, values)} of a serialized tf.train.Example."""
    return _decode_features(_last_fields(record, 1)[0])


def decode_sequence_example(record: bytes):
    """(context {name: (kind, values)}, feature lists {name: (kind, [values per step])})
    of a serialized tf.train.SequenceExample; a list's kind is None when it has no steps."""
    ctx, lists = _last_fields(record, 2)
    feature_lists = {}
    for name, body in _decode_map(lists).items():
        kind, steps = None, []
        for f, w, v in _fields(body):
            if f != 1 or w != 2:
                continue
            step_kind, values = decode_feature(v)
            if kind is not None and step_kind != kind:
                raise ValueError(f"feature list {name!r} mixes {kind} and {step_kind}")
            kind = step_kind
            steps.append(values)
        feature_lists[name] = (kind, steps)
    return _decode_features(ctx), feature_lists


def entry_head(key_head: bytes, value_len: int) -> bytes:
    """A map entry up to its value: 0a varint(E) key_head varint(value_len)."""
    length = varint(value_len)
    return FIELD_1 + varint(len(key_head) + len(length) + value_len) + key_head + length


def _entry(key_head: bytes, value: bytes) -> bytes:
    return entry_head(key_head, len(value)) + value


def key_head(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"feature names must be str, got {name!r}")
    key = name.encode("utf-8")
    return FIELD_1 + varint(len(key)) + key + _FIELD_2

