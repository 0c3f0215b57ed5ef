"""Many tf.train.SequenceExamples at once, vectorised across records, without TensorFlow.

`encode_sequence_examples` gives, for records whose features hold one value each (a
context feature) or one value a step (a feature list), the bytes that
transforms.examples.example_proto.encode_sequence_example gives record by record (the
wire format is described there); it lays every record out in one buffer and writes it
with a few numpy operations per distinct combination of lengths.
"""

from functools import partial
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa

from transforms.examples.example_proto import FEATURE_TAG, FIELD_1, KINDS, bytes_items, \
    entry_head, float_bytes, int64_array, key_head, varint, varint_size


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
        ctx_columns.append((key_head(name), kind) + column)
    list_columns = []
    for name in sorted(feature_lists):
        kind, steps = feature_lists[name]
        column = _column(kind, steps)
        if len(column[2]) != bounds[-1]:
            raise ValueError(f"feature list {name!r} has {len(column[2])} steps, bounds "
                             f"end at {bounds[-1]}")
        list_columns.append((key_head(name), kind) + column)
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
        piece += 1 + varint_size(piece)
        ends = np.zeros(len(piece) + 1, dtype=np.int64)
        np.cumsum(piece, out=ends[1:])
        value = ends[bounds[1:]] - ends[bounds[:-1]] if len(piece) else np.zeros(
            n, dtype=np.int64)
        list_sizes.append((ends, value))
        lists_total += _entry_size(len(head), value)
    sizes = 2 + varint_size(ctx_total) + ctx_total + varint_size(lists_total) + lists_total
    record_ends = np.cumsum(sizes)
    out = np.empty(int(record_ends[-1]), dtype=np.uint8)
    at = record_ends - sizes

    # SequenceExample: 0a varint(len(context)) context 12 varint(len(lists)) lists, written
    # as a sequence of pieces (see _put).
    pieces = [b"\x0a", ctx_total]
    for head, kind, data, starts, lens in ctx_columns:

        def context_head(length, head=head, kind=kind):
            feature = _feature_head(kind, length)
            return entry_head(head, len(feature) + length) + feature

        pieces.append((lens, context_head, data, starts,
                       _entry_size(len(head), _feature_size(kind, lens))))
    pieces += [b"\x12", lists_total]
    counts = np.diff(bounds)
    for (head, kind, data, starts, lens), (ends, value) in zip(list_columns, list_sizes):

        def step_head(length, kind=kind):
            feature = _feature_head(kind, length)
            return FIELD_1 + varint(len(feature) + length) + feature

        if len(lens) and int(lens.min()) == int(lens.max()):
            # Steps of one size: all of them as one block of rows, a record's steps a slice.
            width = int(lens[0])
            steps = _rows([(None, step_head(width), data, starts, width)], None,
                          len(lens)).reshape(-1)
            pieces.append((value, partial(entry_head, head), steps, ends[bounds[:-1]],
                           _entry_size(len(head), value)))
        else:
            inner = len(head) + varint_size(value) + value
            pieces += [FIELD_1, inner, head, value]
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


# --- the sizes and the writing of encode_sequence_examples ---------------------------------------

def _entry_size(key_head_len: int, value: np.ndarray) -> np.ndarray:
    """Bytes of map entries `0a varint(E) key_head varint(V) value` of values of V bytes."""
    inner = key_head_len + varint_size(value) + value
    return 1 + varint_size(inner) + inner


def _feature_size(kind: str, lens: np.ndarray) -> np.ndarray:
    """Bytes of one-value Features whose value takes `lens` bytes (see _feature_head)."""
    if kind != "bytes":
        return lens + 4
    body = 1 + varint_size(lens) + lens
    return 1 + varint_size(body) + body


def _feature_head(kind: str, length: int) -> bytes:
    """What comes before a value of `length` bytes in a one-value Feature: int64
    `1a k+2 0a k` (k varint bytes), float `12 06 0a 04`, bytes `0a varint(B) 0a varint(L)`."""
    if kind == "bytes":
        inner = varint(length)
        return FIELD_1 + varint(1 + len(inner) + length) + FIELD_1 + inner
    return FEATURE_TAG[kind] + bytes((length + 2,)) + FIELD_1 + bytes((length,))


def _column(kind: str, values) -> Tuple[np.ndarray, object, np.ndarray]:
    """The values of a feature, one a record or step: (data, starts, lens), lens the byte
    count of each value's payload. A bytes value's payload is the value, a float's its 4
    little-endian bytes: data holds them all (uint8), value j at starts[j]. An int64's
    payload is its varint: data is then the int64 values, starts None."""
    if kind == "int64":
        values = int64_array(values)
        return values, None, varint_size(values)
    if kind == "float":
        data = np.frombuffer(float_bytes(values), dtype=np.uint8)
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
    items = list(bytes_items(values))
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
        return int(varint_size(piece[j:j + 1])[0])
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
            sizes = varint_size(piece) if isinstance(piece, np.ndarray) else piece[0]
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
    return at + sum(len(p) if isinstance(p, bytes) else varint_size(p)
                    if isinstance(p, np.ndarray) else p[4] for p in block)
