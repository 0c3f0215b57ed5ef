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
"""

from functools import partial
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pyarrow as pa

KINDS = ("int64", "float", "bytes")

# Feature's oneof fields, tag bytes (field << 3 | 2: length-delimited).
_FEATURE_TAG = {"bytes": b"\x0a", "float": b"\x12", "int64": b"\x1a"}
_FIELD_1 = b"\x0a"
_FIELD_2 = b"\x12"

_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_THRESHOLDS = np.uint64(1) << _SHIFTS[1:]        # 2^7, 2^14, ..., 2^63
_INT64_MAX = np.iinfo(np.int64).max


def _varint(n: int) -> bytes:
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
    nbytes = np.searchsorted(_THRESHOLDS, u, side="right").astype(np.int64) + 1
    ends = np.cumsum(nbytes)
    total = int(ends[-1]) if len(ends) else 0
    j = np.arange(total, dtype=np.int64) - np.repeat(ends - nbytes, nbytes)
    data = ((np.repeat(u, nbytes) >> _SHIFTS[j]) & np.uint64(0x7F)).astype(np.uint8)
    data |= np.uint8(0x80)
    data[ends - 1] &= np.uint8(0x7F)
    return data, nbytes


def _int64_array(values) -> np.ndarray:
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


def _float_bytes(values) -> bytes:
    arr = np.asarray(values)
    if arr.ndim > 1:
        raise ValueError(f"float feature values must be a scalar or 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return b""
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"float feature values must be numbers, got {arr.dtype}")
    return arr.reshape(-1).astype("<f4").tobytes()


def _bytes_items(values):
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
    return _FIELD_1 + _varint(len(data)) + data if data else b""


def encode_feature(kind: str, values) -> bytes:
    """A serialized tf.train.Feature holding `values` as a list of `kind`."""
    if kind == "int64":
        body = _packed(varint_parts(_int64_array(values))[0].tobytes())
    elif kind == "float":
        body = _packed(_float_bytes(values))
    elif kind == "bytes":
        body = b"".join([_FIELD_1 + _varint(len(v)) + v for v in _bytes_items(values)])
    else:
        raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")
    return _FEATURE_TAG[kind] + _varint(len(body)) + body


def _map(entries: Mapping[str, bytes]) -> bytes:
    """Map field 1 (string key = 1, message value = 2), entries in sorted key order."""
    return b"".join([_entry(_key_head(key), entries[key]) for key in sorted(entries)])


def _features(features: Mapping[str, Tuple[str, object]]) -> bytes:
    return _map({name: encode_feature(kind, values)
                 for name, (kind, values) in features.items()})


def encode_example(features: Dict[str, Tuple[str, object]]) -> bytes:
    """A serialized tf.train.Example: {name: (kind, values)}."""
    body = _features(features)
    return _FIELD_1 + _varint(len(body)) + body


def _scalar_pieces(kind: str, values, wrap: bool) -> Tuple[bytes, np.ndarray]:
    """Each value as a one-value Feature (wrap: as a FeatureList element, `0a len Feature`),
    all concatenated; and the byte offsets of the pieces (n + 1 of them).
    Numbers are encoded a whole array at a time."""
    if kind == "float":
        # [0a 08] 12 06 0a 04 float32
        head = (b"\x0a\x08" if wrap else b"") + b"\x12\x06\x0a\x04"
        floats = np.frombuffer(_float_bytes(values), dtype=np.uint8).reshape(-1, 4)
        out = np.empty((len(floats), len(head) + 4), dtype=np.uint8)
        out[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
        out[:, len(head):] = floats
        return out.tobytes(), np.arange(len(floats) + 1, dtype=np.int64) * out.shape[1]
    if kind == "int64":
        # [0a k+4] 1a k+2 0a k varint(k bytes)
        data, nbytes = varint_parts(_int64_array(values))
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
    for v in _bytes_items(values):
        piece = seen.get(v)
        if piece is None:
            feature = encode_feature("bytes", (v,))
            piece = seen[v] = _FIELD_1 + _varint(len(feature)) + feature if wrap else feature
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
            entry = _FIELD_1 + _varint(len(feature)) + feature
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
    return _FIELD_1 + _varint(len(ctx)) + ctx + _FIELD_2 + _varint(len(lists)) + lists


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
        key, value = b"", b""
        for f, w, v in _fields(entry):
            if f == 1 and w == 2:
                key = v
            elif f == 2 and w == 2:
                value = v
        out[bytes(key).decode("utf-8")] = value
    return out


def _decode_features(buf: bytes) -> Dict[str, Tuple[object, list]]:
    return {name: decode_feature(v) for name, v in _decode_map(buf).items()}


def decode_example(record: bytes) -> Dict[str, Tuple[object, list]]:
    """{name: (kind, values)} of a serialized tf.train.Example."""
    body = b""
    for field, wire, value in _fields(record):
        if field == 1 and wire == 2:
            body = value
    return _decode_features(body)


def decode_sequence_example(record: bytes):
    """(context {name: (kind, values)}, feature lists {name: (kind, [values per step])})
    of a serialized tf.train.SequenceExample; a list's kind is None when it has no steps."""
    ctx, lists = b"", b""
    for field, wire, value in _fields(record):
        if field == 1 and wire == 2:
            ctx = value
        elif field == 2 and wire == 2:
            lists = value
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


def _entry(key_head: bytes, value: bytes) -> bytes:
    body = key_head + _varint(len(value)) + value
    return _FIELD_1 + _varint(len(body)) + body


def _key_head(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"feature names must be str, got {name!r}")
    key = name.encode("utf-8")
    return _FIELD_1 + _varint(len(key)) + key + _FIELD_2


def encode_sequence_examples(context: Dict[str, Tuple[str, object]],
                             feature_lists: Dict[str, Tuple[str, object]],
                             bounds) -> List[bytes]:
    """Many SequenceExamples at once, every feature holding one value (a context
    feature) or one value a step (a feature list).

    context: {name: (kind, one value per record)}; feature_lists: {name: (kind, the
    steps of every record, concatenated)}; record i's steps are bounds[i]:bounds[i + 1]
    (bounds[0] == 0, bounds[-1] == the number of steps). Gives the same bytes as
    encode_sequence_example record by record.

    Vectorised across records: every record has the same keys and kinds, so a map entry's
    header depends only on the lengths inside it. All records are laid out in one buffer
    (sizes from vectorised length arithmetic), and each header and each value is written
    in place by a few numpy operations per distinct combination of lengths (see _put), not
    by Python code per record; the records' bytes objects are made from it in C at the end."""
    bounds = np.asarray(bounds, dtype=np.int64)
    if bounds.ndim != 1 or len(bounds) == 0 or bounds[0] != 0 or np.any(np.diff(bounds) < 0):
        raise ValueError("bounds must be non-decreasing offsets starting at 0")
    n = len(bounds) - 1
    ctx_columns = []
    for name in sorted(context):
        kind, values = context[name]
        column = _column(kind, values)
        if len(column[2]) != n:
            raise ValueError(f"context feature {name!r} has {len(column[2])} values for "
                             f"{n} records")
        ctx_columns.append((_key_head(name), kind) + column)
    list_columns = []
    for name in sorted(feature_lists):
        kind, steps = feature_lists[name]
        column = _column(kind, steps)
        if len(column[2]) != bounds[-1]:
            raise ValueError(f"feature list {name!r} has {len(column[2])} steps, bounds "
                             f"end at {bounds[-1]}")
        list_columns.append((_key_head(name), kind) + column)
    if n == 0:
        return []

    # Sizes. A context entry's value is one Feature (F bytes); a feature list entry's value
    # is its record's steps, each `0a varint(F) Feature`. Entry: 0a varint(E) key_head
    # varint(V) value, E = len(key_head) + |varint(V)| + V; T bytes in all.
    ctx_total = np.zeros(n, dtype=np.int64)
    for head, kind, data, starts, lens in ctx_columns:
        ctx_total += _entry_size(len(head), _feature_size(kind, lens))
    list_sizes = []
    lists_total = np.zeros(n, dtype=np.int64)
    for head, kind, data, starts, lens in list_columns:
        piece = _feature_size(kind, lens)
        piece += 1 + _varint_size(piece)
        ends = np.zeros(len(piece) + 1, dtype=np.int64)
        np.cumsum(piece, out=ends[1:])
        value = ends[bounds[1:]] - ends[bounds[:-1]] if len(piece) else np.zeros(
            n, dtype=np.int64)
        list_sizes.append((ends, value))
        lists_total += _entry_size(len(head), value)
    sizes = 2 + _varint_size(ctx_total) + ctx_total + _varint_size(lists_total) + lists_total
    record_ends = np.cumsum(sizes)
    out = np.empty(int(record_ends[-1]), dtype=np.uint8)
    at = record_ends - sizes

    # SequenceExample: 0a varint(len(context)) context 12 varint(len(lists)) lists, written
    # as a sequence of pieces (see _put).
    pieces = [b"\x0a", ctx_total]
    for head, kind, data, starts, lens in ctx_columns:

        def entry_head(length, head=head, kind=kind):
            feature = _feature_head(kind, length)
            return _entry_head(head, len(feature) + length) + feature

        pieces.append((lens, entry_head, data, starts,
                       _entry_size(len(head), _feature_size(kind, lens))))
    pieces += [b"\x12", lists_total]
    counts = np.diff(bounds)
    for (head, kind, data, starts, lens), (ends, value) in zip(list_columns, list_sizes):

        def step_head(length, kind=kind):
            feature = _feature_head(kind, length)
            return _FIELD_1 + _varint(len(feature) + length) + feature

        if len(lens) and int(lens.min()) == int(lens.max()):
            # Steps of one size: all of them as one block of rows, a record's steps a slice.
            width = int(lens[0])
            steps = _rows([(None, step_head(width), data, starts, width)], None,
                          len(lens)).reshape(-1)
            pieces.append((value, partial(_entry_head, head), steps, ends[bounds[:-1]],
                           _entry_size(len(head), value)))
        else:
            inner = len(head) + _varint_size(value) + value
            pieces += [_FIELD_1, inner, head, value]
            at = _put(out, at, pieces)
            pieces = []
            if len(lens):
                step_at = ends[:-1] + np.repeat(at - ends[bounds[:-1]], counts)
                _put(out, step_at, [(lens, step_head, data, starts, None)])
            at = at + value
    if pieces:
        _put(out, at, pieces)

    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = record_ends
    records = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out)])
    return records.to_numpy(zero_copy_only=False).tolist()     # bytes objects, made in C


# --- helpers of encode_sequence_examples ---------------------------------------------------------

def _varint_size(n: np.ndarray) -> np.ndarray:
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


def _entry_size(key_head_len: int, value: np.ndarray) -> np.ndarray:
    """Bytes of map entries `0a varint(E) key_head varint(V) value` of values of V bytes."""
    inner = key_head_len + _varint_size(value) + value
    return 1 + _varint_size(inner) + inner


def _feature_size(kind: str, lens: np.ndarray) -> np.ndarray:
    """Bytes of one-value Features whose value takes `lens` bytes (see _feature_head)."""
    if kind != "bytes":
        return lens + 4
    body = 1 + _varint_size(lens) + lens
    return 1 + _varint_size(body) + body


def _feature_head(kind: str, length: int) -> bytes:
    """What comes before a value of `length` bytes in a one-value Feature: int64
    `1a k+2 0a k` (k varint bytes), float `12 06 0a 04`, bytes `0a varint(B) 0a varint(L)`."""
    if kind == "bytes":
        inner = _varint(length)
        return _FIELD_1 + _varint(1 + len(inner) + length) + _FIELD_1 + inner
    return _FEATURE_TAG[kind] + bytes((length + 2,)) + _FIELD_1 + bytes((length,))


def _column(kind: str, values) -> Tuple[np.ndarray, object, np.ndarray]:
    """The values of a feature, one a record or step: (data, starts, lens), lens the byte
    count of each value's payload. A bytes value's payload is the value, a float's its 4
    little-endian bytes: data holds them all (uint8), value j at starts[j]. An int64's
    payload is its varint: data is then the int64 values, starts None."""
    if kind == "int64":
        values = _int64_array(values)
        return values, None, _varint_size(values)
    if kind == "float":
        data = np.frombuffer(_float_bytes(values), dtype=np.uint8)
        return data, np.arange(0, len(data), 4, dtype=np.int64), np.full(len(data) // 4, 4,
                                                                          dtype=np.int64)
    if kind != "bytes":
        raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()       # str / bytes items, as iterating would give them
    if isinstance(values, (list, tuple)) and len(values):
        try:
            text = "\x00".join(values)          # str values only (str.join checks)
        except TypeError:
            text = None
        if text is not None:
            # Joined by NUL, the only character whose UTF-8 has a 00 byte: where no value
            # holds one, the 00 bytes are exactly the boundaries.
            data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            cuts = np.flatnonzero(data == 0)
            if len(cuts) == len(values) - 1:
                starts = np.zeros(len(values), dtype=np.int64)
                starts[1:] = cuts + 1
                ends = np.empty(len(values), dtype=np.int64)
                ends[:-1] = cuts
                ends[-1] = len(data)
                return data, starts, ends - starts
        if set(map(type, values)) <= {str, bytes}:
            array = pa.array(values, type=pa.large_binary())    # UTF-8 for str, in C
            offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[:len(array) + 1]
            data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[:offsets[-1]] \
                if offsets[-1] else np.zeros(0, dtype=np.uint8)
            return data, offsets[:-1], np.diff(offsets)
    items = list(_bytes_items(values))
    lens = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    return np.frombuffer(b"".join(items), dtype=np.uint8), np.cumsum(lens) - lens, lens


def _windows(buf: np.ndarray, width: int) -> np.ndarray:
    """Row j: buf[j:j + width] (a view; rows overlap)."""
    return np.lib.stride_tricks.as_strided(buf, shape=(len(buf) - width + 1, width),
                                           strides=(1, 1))


def _groups(keys: np.ndarray):
    """(key, the indices holding it, or None for all) for each distinct key."""
    if len(keys) == 0:
        return []
    low, high = int(keys.min()), int(keys.max())
    if low == high:
        return [(low, None)]
    if low >= 0 and high < 2 ** 15:
        keys = keys.astype(np.int16)        # a radix sort
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    cuts = (np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist()
    return [(int(ordered[a]), order[a:b]) for a, b in zip([0] + cuts, cuts + [len(keys)])]


def _entry_head(key_head: bytes, value_len: int) -> bytes:
    """A map entry up to its value: 0a varint(E) key_head varint(value_len)."""
    inner = len(key_head) + len(_varint(value_len)) + value_len
    return _FIELD_1 + _varint(inner) + key_head + _varint(value_len)


def _put_varint_columns(rows: np.ndarray, values: np.ndarray) -> None:
    """Column j of rows: byte j of the varints of values, all rows.shape[1] bytes long."""
    u = values.view(np.uint64)
    width = rows.shape[1]
    for j in range(width):
        byte = (u >> np.uint64(7 * j)).astype(np.uint8)
        rows[:, j] = byte | 0x80 if j < width - 1 else byte & 0x7F


# A piece of what _put writes at each position j: bytes (as they are), an int64 array (its
# value j as a varint), or (lens, head_of, data, starts, sizes): head_of(lens[j]) then value
# j's payload (see _column), sizes[j] bytes in all (None where not needed).

def _piece_width(piece, j: int) -> int:
    if isinstance(piece, bytes):
        return len(piece)
    if isinstance(piece, np.ndarray):
        return int(_varint_size(piece[j:j + 1])[0])
    return int(piece[0][j])          # the payload; the head is added by _rows


def _rows(pieces: list, pick, m: int) -> np.ndarray:
    """m rows of the pieces (see above) for the positions at `pick` (None: all), which
    have the same sizes throughout. A value piece may be (None, head, data, starts, length)."""
    first = 0 if pick is None else int(pick[0])
    pick = slice(None) if pick is None else pick
    layout = []
    for piece in pieces:
        if isinstance(piece, (bytes, np.ndarray)):
            layout.append((piece, None, _piece_width(piece, first)))
        else:
            lens, head_of, data, starts, size = piece
            length = size if lens is None else int(lens[first])
            head = head_of if lens is None else head_of(length)
            layout.append((head, None, len(head)))
            if length:
                layout.append((data, starts, length))
    # The constant bytes go in as one template row (one copy a row), the rest column by
    # column or a slice at a time.
    template = b"".join(what if isinstance(what, bytes) else bytes(width)
                        for what, _, width in layout)
    rows = np.empty((m, len(template)), dtype=np.uint8)
    rows[:] = np.frombuffer(template, dtype=np.uint8)
    col = 0
    for what, starts, width in layout:
        if isinstance(what, bytes):
            pass
        elif starts is None:                 # varints: of a length, or of int64 values
            _put_varint_columns(rows[:, col:col + width], what[pick])
        else:
            rows[:, col:col + width] = _windows(what, width)[starts[pick]]
        col += width
    return rows


def _put(out: np.ndarray, at: np.ndarray, pieces: list) -> np.ndarray:
    """Writes the pieces (see above) one after another at each position in `at`; returns
    the positions after them. Consecutive pieces go in one block while at most one of them
    has sizes that differ between positions: the positions where it has the same size take
    one block of rows (see _rows), written with one numpy assignment. (Grouping positions
    by the sizes of several pieces at once makes many small scattered blocks: slower.)"""
    block, key = [], None
    for piece in pieces:
        if not isinstance(piece, bytes):
            sizes = _varint_size(piece) if isinstance(piece, np.ndarray) else piece[0]
            if len(sizes) and int(sizes.min()) != int(sizes.max()):
                if key is not None:
                    at = _put_block(out, at, block, key)
                    block = []
                key = sizes
        block.append(piece)
    return _put_block(out, at, block, key)


def _put_block(out: np.ndarray, at: np.ndarray, block: list, key) -> np.ndarray:
    if not block:
        return at
    for _, idx in _groups(np.zeros(len(at), dtype=np.int64) if key is None else key):
        rows = _rows(block, idx, len(at) if idx is None else len(idx))
        _windows(out, rows.shape[1])[at if idx is None else at[idx]] = rows
    if any(isinstance(p, tuple) and p[4] is None for p in block):
        return None
    return at + sum(len(p) if isinstance(p, bytes) else _varint_size(p)
                    if isinstance(p, np.ndarray) else p[4] for p in block)
