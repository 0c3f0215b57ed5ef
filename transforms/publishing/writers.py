"""Streamed writers: one piece of a file set (Arrow batches, JSON lines or serialized
records) into files under names unique to the run, chunk by chunk, cut by bytes; each
file comes back as a FileRecord for the run's manifest (docs/publishing.md).
"""

import zlib
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence

import apache_beam as beam
import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.common.errors import Refusal
from transforms.publishing.tfrecord import GZIP_LEVEL, encode_examples, feature_spec, \
    tfrecord_frame

# "records": pieces of already serialized records (a list of bytes or an Arrow binary
# array, e.g. tf.train.SequenceExample) keyed (file number, number of files): one GZIP
# TFRecord file each, {file_set}-SSSSS-of-NNNNN-{run_id}.tfrecord.gz, never cut.
FORMATS = {"tfrecord": ".tfrecord.gz", "parquet": ".parquet", "jsonl": ".jsonl.gz",
           "records": ".tfrecord.gz"}


CHUNK_ROWS = 8192     # rows encoded and compressed at a time

# JSON lines stay lines for every reader: JSON text may hold U+2028, U+2029 and U+0085
# raw inside a string (json.dumps(ensure_ascii=False) leaves them), and readers that split
# on Unicode line breaks (str.splitlines, many editors and log tools) cut a line there.
# Written as JSON escapes they mean the same characters.
LINE_BREAK_ESCAPES = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


def json_lines_bytes(lines: Sequence[str]) -> bytes:
    """`lines` (JSON texts) as UTF-8 JSON lines, each ended by \\n, with U+2028, U+2029 and
    U+0085 escaped. A line holding a raw \\n or \\r (never valid JSON) is refused."""
    if not lines:
        return b""
    text = "\n".join(lines)
    if text.count("\n") != len(lines) - 1 or "\r" in text:
        raise ValueError("a JSON line holds a raw line break (\\n or \\r); JSON text escapes "
                         "them, so the line was not written by json.dumps")
    return (text.translate(LINE_BREAK_ESCAPES) + "\n").encode("utf-8")


def bytes_of_mb(megabytes: float) -> int:
    """--target_shard_mb as the byte count a file is cut at (at least 1)."""
    return max(1, int(megabytes * (1 << 20)))


class FileRecord(NamedTuple):
    """One written data file: its file set, its name relative to the day folder, its
    rows, its size in bytes, the feature spec of its file set and the CRC32C of its
    bytes (8 hex digits, big-endian as GCS reports it base64-encoded)."""
    file_set: str
    name: str
    rows: int
    size_bytes: int
    feature_spec: Dict
    crc32c: str = ""


def piece_file_name(file_set: str, run_id: str, piece_key, part: int, suffix: str) -> str:
    """{file_set}-{run_id}-{piece_key}-{part:03d}{suffix}; int keys zero-padded to 5 digits."""
    if isinstance(piece_key, tuple):
        number, of = (int(v) for v in piece_key)
        if part or not 0 <= number < of:
            raise ValueError(f"file {piece_key} of a records piece: need 0 <= number < count")
        return f"{file_set}-{number:05d}-of-{of:05d}-{run_id}{suffix}"
    if isinstance(piece_key, (int, np.integer)):
        key = f"{int(piece_key):05d}"
    else:
        key = str(piece_key)
        if not key or "/" in key:
            raise ValueError(f"piece key {piece_key!r} must be a non-empty name without '/'")
    return f"{file_set}-{run_id}-{key}-{part:03d}{suffix}"


class _CountingSink:
    """A write-only file object over a FileSystems handle that counts the bytes written."""

    def __init__(self, handle):
        self._handle, self.bytes_written, self.closed = handle, 0, False
        self._crc = 0

    def write(self, data) -> int:
        self._handle.write(data)
        self.bytes_written += len(data)
        self._crc = google_crc32c.extend(self._crc,
                                         data if isinstance(data, bytes) else bytes(data))
        return len(data)

    @property
    def crc32c(self) -> str:
        return f"{self._crc:08x}"

    def tell(self) -> int:
        return self.bytes_written

    def flush(self) -> None:
        self._handle.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
            self.closed = True


def _open_sink(path: str) -> _CountingSink:
    return _CountingSink(FileSystems.create(path, mime_type="application/octet-stream",
                                            compression_type="uncompressed"))


def _arrow_chunks(data, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """A RecordBatch or Table as record batches of at most chunk_rows rows, each a compact
    copy of its own rows only."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    for start in range(0, table.num_rows, chunk_rows):
        piece = table.slice(start, chunk_rows).combine_chunks()
        yield from piece.to_batches()


def _line_chunks(lines: Sequence[str], chunk_rows: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(lines), chunk_rows):
        yield lines[start:start + chunk_rows]


class _GzipFile:
    """A GZIP stream of one file; each chunk ends in a sync flush, so the bytes written
    so far are exact at every chunk boundary (and the cut by size is too)."""

    def __init__(self, path: str):
        self.sink = _open_sink(path)
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        self.sink.write(self._compressor.compress(data)
                        + self._compressor.flush(zlib.Z_SYNC_FLUSH))

    def close(self) -> None:
        self.sink.write(self._compressor.flush())
        self.sink.close()


class _ParquetFile:
    """A Parquet file written one row group per chunk (snappy)."""

    def __init__(self, path: str, schema: pa.Schema):
        self.sink = _open_sink(path)
        self._writer = pq.ParquetWriter(self.sink, schema, compression="snappy")

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_table(pa.Table.from_batches([batch]), row_group_size=batch.num_rows)

    def close(self) -> None:
        self._writer.close()
        self.sink.close()


def write_piece(final_dir: str, run_id: str, fmt: str, file_set: str, piece_key, data,
                target_bytes: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[FileRecord]:
    """Stream one piece into final_dir, chunk_rows rows at a time, starting a new file when
    the bytes written reach target_bytes; yields a FileRecord per file. A piece with no
    rows writes no file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown file format {fmt!r}; expected one of {sorted(FORMATS)}")
    final_dir = final_dir.rstrip("/")
    if fmt == "records":
        if not len(data):
            return
        name = piece_file_name(file_set, run_id, piece_key, 0, FORMATS[fmt])
        current = _GzipFile(f"{final_dir}/{name}")
        for chunk in _line_chunks(data, chunk_rows):
            if isinstance(chunk, (pa.Array, pa.ChunkedArray)):
                chunk = chunk.to_pylist()
            current.write(tfrecord_frame(chunk))
        current.close()
        yield FileRecord(file_set, name, len(data), current.sink.bytes_written, {},
                         current.sink.crc32c)
        return
    if fmt == "jsonl":
        chunks = _line_chunks(data, chunk_rows)
        spec = {"line": "json"}
    else:
        chunks = _arrow_chunks(data, chunk_rows)
        spec = feature_spec(data.schema) if fmt == "tfrecord" else \
            {f.name: str(f.type) for f in data.schema}
    part, current, name, rows = 0, None, "", 0
    for chunk in chunks:
        if current is None:
            name = piece_file_name(file_set, run_id, piece_key, part, FORMATS[fmt])
            path = f"{final_dir}/{name}"
            current = _ParquetFile(path, chunk.schema) if fmt == "parquet" else _GzipFile(path)
            rows = 0
        if fmt == "tfrecord":
            current.write(tfrecord_frame(encode_examples(chunk)))
        elif fmt == "jsonl":
            current.write(json_lines_bytes(chunk))
        else:
            current.write(chunk)
        rows += len(chunk) if fmt == "jsonl" else chunk.num_rows
        if current.sink.bytes_written >= target_bytes:
            current.close()
            yield FileRecord(file_set, name, rows, current.sink.bytes_written, spec,
                             current.sink.crc32c)
            current, part = None, part + 1
    if current is not None:
        current.close()
        yield FileRecord(file_set, name, rows, current.sink.bytes_written, spec,
                         current.sink.crc32c)


def require_blessed(gate, final_dir: str) -> Dict:
    """The gate's validation summary; refuses (raises) unless it is one (an empty gate
    PCollection reaches a step as a non-dict)."""
    if not isinstance(gate, dict):
        raise Refusal(f"no blessed validation summary for {final_dir}; nothing published")
    return gate


class WritePieces(beam.DoFn):
    """(file_set, piece_key, data) -> one FileRecord per file written (see write_piece).
    Given a gate side input, nothing is written before the gate holds a summary; given
    `base` (the day's _SUCCESS as the run read it at its start), nothing is written
    before that read."""

    def __init__(self, final_dir: str, run_id: str, fmt: str, target_bytes: int,
                 chunk_rows: int = CHUNK_ROWS):
        if fmt not in FORMATS:
            raise ValueError(f"unknown file format {fmt!r}; expected one of {sorted(FORMATS)}")
        self._final_dir, self._run_id, self._fmt = final_dir, run_id, fmt
        self._target_bytes, self._chunk_rows = target_bytes, chunk_rows

    def process(self, element, *side, final_dir=None, base=None):
        final_dir = final_dir or self._final_dir
        if side:
            require_blessed(side[0], final_dir)
        file_set, piece_key, data = element
        yield from write_piece(final_dir, self._run_id, self._fmt, file_set, piece_key,
                               data, self._target_bytes, self._chunk_rows)


def publish_tree(source_dir: str, final_dir: str, name: str, run_id: str,
                 file_set: Optional[str] = None) -> List[FileRecord]:
    """Copy a directory tree (a TensorFlow SavedModel, tf.Transform's output; local or on
    any Beam filesystem) to <final_dir>/<name>-<run_id>/..., one file at a time in name
    order; returns a FileRecord per file (file set `file_set`, default `name`; rows 0)
    for publish_day to list."""
    final_dir, root = final_dir.rstrip("/"), source_dir.rstrip("/")
    found = FileSystems.match([f"{root}/**"])[0].metadata_list
    if not found:
        raise FileNotFoundError(f"{source_dir} holds no files")
    records = []
    for path in sorted(m.path for m in found):
        relative = path[len(root) + 1:]
        target = f"{name}-{run_id}/{relative}"
        sink = _open_sink(f"{final_dir}/{target}")
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sink.write(block)
        sink.close()
        records.append(FileRecord(file_set or name, target, 0, sink.bytes_written, {},
                                  sink.crc32c))
    return records
