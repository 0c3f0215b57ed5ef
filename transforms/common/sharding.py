"""Stable, vectorised hashing of string columns, for sharding rows by a key.

Python's ``hash()`` of a str changes from process to process, so it cannot
decide which shard a user or an event id goes to. This hash is a pure function
of the UTF-8 bytes, computed over a whole Arrow array at once.
"""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_POWERS = None  # filled lazily: multipliers for byte positions 0..63


def _powers() -> np.ndarray:
    global _POWERS
    if _POWERS is None:
        base = np.uint64(0x100000001B3)
        powers = np.empty(64, dtype=np.uint64)
        value = np.uint64(1)
        with np.errstate(over="ignore"):
            for i in range(64):
                powers[i] = value
                value = value * base
        _POWERS = powers
    return _POWERS


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return h


def stable_hash(strings) -> np.ndarray:
    """uint64 hash of each string of an Arrow string array (nulls hash as the empty string)."""
    arr = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    n = len(arr)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None \
        else np.zeros(0, dtype=np.uint8)
    # Blocks of strings keep the per-byte temporaries small (and in cache).
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        out[lo:hi] = _hash_block(data, offsets[lo:hi + 1])
    return mix64(out)


_BLOCK = 16384


def _hash_block(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    lengths = np.diff(offsets)
    h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    first, last = int(offsets[0]), int(offsets[-1])
    if last == first:
        return h
    local = offsets - first
    pos = np.arange(last - first, dtype=np.int64) - np.repeat(local[:-1], lengths)
    with np.errstate(over="ignore"):
        terms = (data[first:last].astype(np.uint64) + np.uint64(1)) * _powers()[pos & 63] \
            * (np.uint64(1) + (pos >> 6).astype(np.uint64) * np.uint64(0x632BE59BD9B4E019))
        nonempty = lengths > 0
        h[nonempty] += np.add.reduceat(terms, local[:-1][nonempty])
    return h


def shard_ids(strings, num_shards: int) -> np.ndarray:
    """Shard number in [0, num_shards) of each string, the same in every process."""
    return (stable_hash(strings) % np.uint64(num_shards)).astype(np.int64)


def split_by_shard(table: pa.Table, shards: np.ndarray, num_shards: int):
    """Yield (shard, sub-table) for each non-empty shard, rows kept in their order.

    Each sub-table is a compact copy (``take``), not a slice: a pickled slice
    would carry its parent's whole buffers into the shuffle."""
    if table.num_rows == 0:
        return
    order = np.argsort(shards, kind="stable")
    ordered = shards[order]
    # Only the shards present: the work follows the rows, not the shard count.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(order)]):
        yield int(ordered[start]), table.take(pa.array(order[start:end]))


def user_shards(strings, num_shards: int) -> np.ndarray:
    """shard_ids of a column with many repeats (user ids): each distinct value hashed once."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    encoded = pc.dictionary_encode(strings)
    return shard_ids(encoded.dictionary, num_shards)[
        encoded.indices.to_numpy(zero_copy_only=False)]


def to_ipc(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes: what crosses a shuffle. Cheaper to encode and
    decode than a pickled table, and only the table's own rows travel."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


# ---------------------------------------------------------------------------------------------
# Shard counts that follow the data

AUTO = "auto"


def parse_shard_count(value, flag: str) -> int:
    """'auto' -> 0 (derived from the day's rows while the pipeline runs); a number >= 1 -> itself.
    Raises naming `flag` and the accepted form otherwise."""
    text = str(value).strip().lower()
    if text == AUTO:
        return 0
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1 or str(count) != text.lstrip("+"):
        raise ValueError(f"{flag}={value!r} must be 'auto' or a whole number >= 1")
    return count


def resolve_shard_count(requested: int, rows: int, max_rows_per_shard: int) -> int:
    """The shard count a stage uses: `requested` when set (>= 1), else
    ceil(rows / max_rows_per_shard), at least 1."""
    if requested:
        return int(requested)
    return max(1, -(-int(rows) // int(max_rows_per_shard)))


class ResolveShardCount(beam.PTransform):
    """PCollection of row counts (ints) -> one int, the shard count of a stage: `requested`
    when >= 1, else derived from the summed rows. A global sum of ints: O(1) state, and
    nothing about the key space is needed when the pipeline is built."""

    def __init__(self, requested: int, max_rows_per_shard: int):
        super().__init__()
        if requested < 0:
            raise ValueError(f"shard count {requested} must be 0 (auto) or >= 1")
        if max_rows_per_shard < 1:
            raise ValueError(f"--max_rows_per_shard={max_rows_per_shard} must be >= 1")
        self._requested, self._max_rows = requested, max_rows_per_shard

    def expand(self, row_counts):
        requested, max_rows = self._requested, self._max_rows
        return (row_counts
                | "SumRows" >> beam.CombineGlobally(sum)
                | "DeriveShardCount" >> beam.Map(
                    lambda rows: resolve_shard_count(requested, rows, max_rows)))
