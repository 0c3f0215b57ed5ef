"""Publishing outputs: GZIP TFRecords of tf.train.Example, Parquet and GZIP JSON
lines, written in pieces straight into the day's folder under names unique to the
run, then made visible at once by a run manifest and a _SUCCESS marker.

The protocol (PublishFileSets; publish_day is its last step):
  1. every data file is streamed into <day>/ as {file_set}-{run_id}-{piece}-{part}
     (a retried bundle rewrites the same names with the same content);
  2. manifest-<run_id>.json lists every file of the run (rows, bytes), then
     manifest.json (the same, for people);
  3. _SUCCESS, holding the run id, is written last: readers follow it;
  4. only then every file of the folder the run does not list is deleted.
When the folder is <kind folder>/dt=YYYY-MM-DD, <kind folder>/LATEST then names the
newest published day (YYYY-MM-DD and a newline): written after _SUCCESS, only when the
day is not older than the one it names (a backfill leaves it). withdraw_day unpublishes
a refused day (every kind but the quarantine loses _SUCCESS) and moves LATEST back.
The manifests, _SUCCESS and LATEST are replaced atomically (one object write; locally a
temporary name renamed over), so a reader sees the old day or the new one whole,
whichever step a crash or a second, concurrent run of the same step interrupts.

Examples are encoded by tfx-bsl's Arrow-to-Example encoder (C++, no TensorFlow
import); the TFRecord framing (length, masked CRC32C) is written here.
"""

import datetime as dt
import gzip
import json
import os
import re
import struct
import uuid
import zlib
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence

import apache_beam as beam
import google_crc32c
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
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
    from tfx_bsl.coders import example_coder
    if batch.num_rows == 0:
        return []
    return example_coder.RecordBatchToExamplesEncoder().encode(as_feature_lists(batch))


def decode_examples(records: Sequence[bytes]) -> pa.RecordBatch:
    from tfx_bsl.coders import example_coder
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


def write_bytes(path: str, data: bytes) -> None:
    """Write `data` as is (no compression by file suffix), locally or on GCS."""
    with FileSystems.create(path, mime_type="application/octet-stream",
                            compression_type="uncompressed") as handle:
        handle.write(data)


# ---------------------------------------------------------------------------------------------
# Writing pieces: streamed, chunk by chunk, cut by bytes

# "records": pieces of already serialized records (a list of bytes or an Arrow binary
# array, e.g. tf.train.SequenceExample) keyed (file number, number of files): one GZIP
# TFRecord file each, {file_set}-SSSSS-of-NNNNN-{run_id}.tfrecord.gz, never cut.
FORMATS = {"tfrecord": ".tfrecord.gz", "parquet": ".parquet", "jsonl": ".jsonl.gz",
           "records": ".tfrecord.gz"}
CHUNK_ROWS = 8192     # rows encoded and compressed at a time
RUN_MANIFEST = "manifest-{run_id}.json"
TMP_PREFIX = "_tmp-"  # local atomic writes: _tmp-<run_id>-<uuid>-<name>, renamed over <name>


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


def new_run_id() -> str:
    """A run id unique to one construction of a publishing step: UTC time + random hex."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:8]}"


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
        import pyarrow.parquet as pq
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
            current.write(("\n".join(chunk) + "\n").encode("utf-8"))
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
        raise ValueError(f"no blessed validation summary for {final_dir}; nothing published")
    return gate


class WritePieces(beam.DoFn):
    """(file_set, piece_key, data) -> one FileRecord per file written (see write_piece).
    Given a gate side input, nothing is written before the gate holds a summary."""

    def __init__(self, final_dir: str, run_id: str, fmt: str, target_bytes: int,
                 chunk_rows: int = CHUNK_ROWS):
        if fmt not in FORMATS:
            raise ValueError(f"unknown file format {fmt!r}; expected one of {sorted(FORMATS)}")
        self._final_dir, self._run_id, self._fmt = final_dir, run_id, fmt
        self._target_bytes, self._chunk_rows = target_bytes, chunk_rows

    def process(self, element, *side, final_dir=None):
        final_dir = final_dir or self._final_dir
        if side:
            require_blessed(side[0], final_dir)
        file_set, piece_key, data = element
        yield from write_piece(final_dir, self._run_id, self._fmt, file_set, piece_key,
                               data, self._target_bytes, self._chunk_rows)


def publish_tree(local_dir: str, final_dir: str, name: str, run_id: str,
                 file_set: Optional[str] = None) -> List[FileRecord]:
    """Copy a local directory tree (e.g. a TensorFlow SavedModel) to
    <final_dir>/<name>-<run_id>/..., one file at a time; returns a FileRecord per file
    (file set `file_set`, default `name`; rows 0) for publish_day to list."""
    final_dir, root = final_dir.rstrip("/"), os.path.abspath(local_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{local_dir} is not a directory")
    records = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            source = os.path.join(dirpath, filename)
            relative = os.path.relpath(source, root).replace(os.sep, "/")
            target = f"{name}-{run_id}/{relative}"
            sink = _open_sink(f"{final_dir}/{target}")
            with open(source, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sink.write(block)
            sink.close()
            records.append(FileRecord(file_set or name, target, 0, sink.bytes_written, {},
                                      sink.crc32c))
    return records


# ---------------------------------------------------------------------------------------------
# The publish step: manifests, _SUCCESS, then removal of what the run does not list

def _is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def write_atomic(path: str, data: bytes, run_id: str) -> None:
    """Replace `path` so that a reader sees the old content or the new, never a part.
    One object write is atomic on an object store; locally a temporary file (unique to
    this writer) is renamed over the target (POSIX rename replaces atomically)."""
    if not _is_local(path):
        write_bytes(path, data)
        return
    head, _, leaf = path.rpartition("/")
    temporary = f"{head}/{TMP_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}-{leaf}"
    write_bytes(temporary, data)
    FileSystems.rename([temporary], [path])


def manifest_content(run_id: str, records: Iterable[FileRecord], fields: Dict,
                     file_sets: Sequence[str] = ()) -> Dict:
    """The manifest of a run: `fields`, the run id and, per file set, every file (name,
    rows, size_bytes) in name order, the total rows and the feature spec. Records of the
    same file (a retried bundle) count once; records of one name with different rows
    (two pieces with one key) raise. (Sizes may differ: tfx-bsl serialises an Example's
    features in no fixed order, so a rewrite holds the same records in other bytes.)"""
    by_name: Dict[str, FileRecord] = {}
    for record in records:
        record = FileRecord(*record)
        seen = by_name.setdefault(record.name, record)
        if (seen.file_set, seen.rows) != (record.file_set, record.rows):
            raise ValueError(f"two different records for file {record.name}: {seen} and {record}")
    sets: Dict[str, Dict] = {name: {"files": [], "rows": 0, "feature_spec": {}}
                             for name in file_sets}
    for record in sorted(by_name.values(), key=lambda r: (r.file_set, r.name)):
        entry = sets.setdefault(record.file_set, {"files": [], "rows": 0, "feature_spec": {}})
        listed = {"name": record.name, "rows": record.rows, "size_bytes": record.size_bytes}
        if record.crc32c:
            listed["crc32c"] = record.crc32c
        entry["files"].append(listed)
        entry["rows"] += record.rows
        entry["feature_spec"] = entry["feature_spec"] or record.feature_spec
    return dict(fields, run_id=run_id, file_sets=dict(sorted(sets.items())))


def _listed_names(manifest: Dict) -> List[str]:
    return [f["name"] if isinstance(f, dict) else f
            for entry in manifest["file_sets"].values() for f in entry["files"]]


def delete_tolerant(paths: Sequence[str]) -> None:
    """Delete `paths`; a file already gone (deleted by a concurrent run) is not an error."""
    if not paths:
        return
    try:
        FileSystems.delete(list(paths))
    except BeamIOError:
        left = [p for p in paths if FileSystems.exists(p)]
        if left:
            FileSystems.delete(left)


def remove_unlisted(final_dir: str, run_id: str, keep: Iterable[str]) -> List[str]:
    """Delete every file under final_dir that is not in `keep` (names relative to it),
    except this run's own in-flight temporary files and the files of the run _SUCCESS
    names now, if another run has taken over meanwhile. Returns what was deleted."""
    final_dir = final_dir.rstrip("/")
    keep = set(keep)
    current = read_run_id(final_dir, missing_ok=True)
    if current and current != run_id:
        keep |= set(_listed_names(_read_json(f"{final_dir}/{RUN_MANIFEST.format(run_id=current)}")))
        keep |= {RUN_MANIFEST.format(run_id=current)}
    prefix = f"{final_dir}/"
    found = [m.path for m in FileSystems.match([f"{final_dir}/**"])[0].metadata_list]
    stale = sorted(p for p in found if p.startswith(prefix) and p[len(prefix):] not in keep
                   and not p[len(prefix):].startswith(f"{TMP_PREFIX}{run_id}-"))
    delete_tolerant(stale)
    if _is_local(final_dir):
        for dirpath, _, _ in sorted(os.walk(final_dir), reverse=True):
            if dirpath != final_dir and not os.listdir(dirpath):
                try:
                    os.rmdir(dirpath)
                except OSError:   # refilled or removed by a concurrent run
                    pass
    return stale


def publish_day(final_dir: str, run_id: str, records: Iterable[FileRecord], fields: Dict,
                file_sets: Sequence[str] = ()) -> Dict:
    """Make a run's files the published day of final_dir: write manifest-<run_id>.json
    and manifest.json, then _SUCCESS (the run id), then delete every other file of the
    folder. Safe to repeat, to run twice at once and to rerun after a crash at any point.
    Returns the manifest."""
    from transforms.provenance import suite_fields
    final_dir = final_dir.rstrip("/")
    manifest = manifest_content(run_id, records, dict(suite_fields(), **fields), file_sets)
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    run_manifest = RUN_MANIFEST.format(run_id=run_id)
    write_atomic(f"{final_dir}/{run_manifest}", body, run_id)
    write_atomic(f"{final_dir}/{MANIFEST}", body, run_id)
    write_atomic(f"{final_dir}/{SUCCESS}", f"{run_id}\n".encode(), run_id)
    day_folder = split_day_folder(final_dir)
    if day_folder:
        update_latest(*day_folder, run_id)
    remove_unlisted(final_dir, run_id,
                    _listed_names(manifest) + [run_manifest, MANIFEST, SUCCESS])
    return manifest


VALIDATION_FIELDS = ("rows_read", "rows_valid", "rows_quarantined", "duplicates_dropped",
                     "out_of_span", "blessed", "overridden")


class PublishFileSets(beam.PTransform):
    """Pieces (file_set, piece_key, data) -> the published day folder; outputs one
    element, the manifest written.

    data is a pa.RecordBatch or pa.Table (fmt "tfrecord": tf.train.Example; "parquet")
    or a list of str lines (fmt "jsonl"). Files are streamed into final_dir under names
    holding the run id (made once, here), cut at target_shard_mb, then published by one
    step (publish_day). With `gate` (a PCollection with the blessed day's validation
    summary) nothing is written before it holds one, and an empty gate refuses.
    `extra` maps manifest field names to PCollections of one value each (known only
    while the pipeline runs). `file_sets` are listed in the manifest even when empty.
    `final_dir_from` (a PCollection of one directory) names the folder at run time
    instead of final_dir, and `check` (a function of that folder) runs in the publish
    step right before publish_day: it raises to refuse publishing."""

    def __init__(self, final_dir: str, manifest: Dict, gate=None, fmt: str = "tfrecord",
                 target_shard_mb: float = 128.0, extra: Optional[Dict] = None,
                 file_sets: Sequence[str] = (), chunk_rows: int = CHUNK_ROWS,
                 final_dir_from=None, check=None):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"unknown file format {fmt!r}; expected one of {sorted(FORMATS)}")
        if not target_shard_mb > 0:
            raise ValueError(f"--target_shard_mb={target_shard_mb} must be > 0")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows={chunk_rows} must be >= 1")
        self._final_dir, self._manifest, self._gate, self._fmt = \
            final_dir.rstrip("/"), dict(manifest), gate, fmt
        self._target_bytes = max(1, int(target_shard_mb * (1 << 20)))
        self._extra = dict(sorted((extra or {}).items()))
        self._file_sets, self._chunk_rows = tuple(file_sets), chunk_rows
        self._dir_from, self._check = final_dir_from, check
        self.run_id = new_run_id()

    def expand(self, pieces):
        final_dir, fields, run_id = self._final_dir, self._manifest, self.run_id
        file_sets, has_gate, extra_names = self._file_sets, self._gate is not None, \
            list(self._extra)
        gate_input = [beam.pvalue.AsSingleton(self._gate)] if has_gate else []
        dir_input = {"final_dir": beam.pvalue.AsSingleton(self._dir_from)} \
            if self._dir_from is not None else {}
        records = pieces | "WriteFiles" >> beam.ParDo(WritePieces(
            final_dir, run_id, self._fmt, self._target_bytes, self._chunk_rows), *gate_input,
            **dir_input)
        check = self._check

        def publish(_, written, *side, final_dir=final_dir):
            values = dict(fields)
            if has_gate:
                gate, side = require_blessed(side[0], final_dir), side[1:]
                values["validation"] = {k: gate.get(k) for k in VALIDATION_FIELDS}
            values.update(zip(extra_names, side))
            if check is not None:
                check(final_dir)
            return publish_day(final_dir, run_id, written, values, file_sets)

        side_inputs = [beam.pvalue.AsList(records)] + gate_input
        side_inputs += [beam.pvalue.AsSingleton(p) for p in self._extra.values()]
        return (pieces.pipeline
                | "StartPublish" >> beam.Create([None])
                | "PublishDay" >> beam.Map(publish, *side_inputs, **dir_input))


# ---------------------------------------------------------------------------------------------
# Reading a published day: _SUCCESS -> run id -> manifest-<run_id>.json -> files

def _read_json(path: str) -> Dict:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return json.loads(handle.read().decode("utf-8"))


def read_run_id(day_dir: str, missing_ok: bool = False) -> str:
    """The run id _SUCCESS holds ('' for a day published before run manifests).
    Raises FileNotFoundError naming the folder when nothing is published there."""
    path = f"{day_dir.rstrip('/')}/{SUCCESS}"
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read().decode("utf-8").strip()
    except (OSError, BeamIOError) as err:
        if FileSystems.exists(path):
            raise
        if missing_ok:
            return ""
        raise FileNotFoundError(f"{day_dir.rstrip('/')} has no {SUCCESS}: no day is "
                                "published there") from err


def published_manifest(day_dir: str) -> Dict:
    """The manifest of the run _SUCCESS names. When that manifest has vanished (a newer
    publish replaced the day meanwhile), _SUCCESS is read once more."""
    day_dir = day_dir.rstrip("/")
    for attempt in (0, 1):
        run_id = read_run_id(day_dir)
        # A day published before run manifests: _SUCCESS is empty, manifest.json lists it.
        path = f"{day_dir}/{RUN_MANIFEST.format(run_id=run_id)}" if run_id else \
            f"{day_dir}/{MANIFEST}"
        try:
            return _read_json(path)
        except (OSError, BeamIOError):
            if attempt or FileSystems.exists(path):
                raise
    raise AssertionError("unreachable")


def manifest_files(day_dir: str, manifest: Dict, file_set: str) -> List[str]:
    """Paths of one file set listed by `manifest` (of the day folder day_dir)."""
    sets = manifest["file_sets"]
    if file_set not in sets:
        raise KeyError(f"{day_dir} has no file set {file_set!r} (it has {sorted(sets)})")
    return [f"{day_dir.rstrip('/')}/{f['name'] if isinstance(f, dict) else f}"
            for f in sets[file_set]["files"]]


def published_files(day_dir: str, file_set: str) -> List[str]:
    """Paths of one file set of the published day, in name order, from its manifest."""
    return manifest_files(day_dir, published_manifest(day_dir), file_set)


def read_published(day_dir: str, file_set: str, read_one):
    """[read_one(path) for each file of the file set]; when a listed file has vanished
    (a newer publish deleted it meanwhile), starts again once from _SUCCESS."""
    for attempt in (0, 1):
        paths = published_files(day_dir, file_set)
        try:
            return [read_one(path) for path in paths]
        except (OSError, BeamIOError):
            if attempt or all(FileSystems.exists(p) for p in paths):
                raise
    raise AssertionError("unreachable")


def read_jsonl_file(path: str) -> List[str]:
    """The lines of one GZIP JSON-lines file."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return gzip.decompress(handle.read()).decode("utf-8").splitlines()


def read_file_set(day_dir: str, file_set: str) -> List[Dict[str, list]]:
    """Every record of one published TFRecord file set of a day folder (the manifest's
    files, in name order), as dicts of feature name -> list of values."""
    rows: List[Dict[str, list]] = []
    for records in read_published(day_dir, file_set, read_tfrecord_file):
        if not records:
            continue
        batch = decode_examples(records)
        columns = {n: batch.column(i).to_pylist() for i, n in enumerate(batch.schema.names)}
        rows += [{n: columns[n][i] for n in columns} for i in range(batch.num_rows)]
    return rows


def load_index(day_dir: str):
    """(article ids, indexes) of the `index` file set of a published dt=... folder;
    raises FileNotFoundError when nothing is published there."""
    ids, index = [], []
    for records in read_published(day_dir, "index", read_tfrecord_file):
        if not records:
            continue
        batch = decode_examples(records)
        if batch.num_rows:
            ids.append(batch.column(batch.schema.get_field_index("article_id")).flatten()
                       .cast(pa.string()))
            index.append(batch.column(batch.schema.get_field_index("index")).flatten()
                         .to_numpy())
    if not ids:
        return pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
    return pa.concat_arrays(ids), np.concatenate(index).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# LATEST and withdrawal: <root>/<kind>/LATEST names the newest dt=D with _SUCCESS

LATEST = "LATEST"
_DAY_FOLDER_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
# The published kinds a refused day withdraws (the quarantine is kept: refused days keep it).
WITHDRAWN_KINDS = ("validated", "cooccurrence")
WITHDRAWN_FAMILIES = ("examples", "features")   # <out>/<family>/<kind>/dt=D


def split_day_folder(final_dir: str):
    """(kind folder, day) of a <kind folder>/dt=YYYY-MM-DD path, or None for another path."""
    head, _, leaf = final_dir.rstrip("/").rpartition("/")
    found = _DAY_FOLDER_RE.match(leaf)
    return (head, found.group(1)) if head and found else None


def read_latest(kind_dir: str) -> str:
    """The day <kind_dir>/LATEST names (YYYY-MM-DD), '' when there is none."""
    path = f"{kind_dir.rstrip('/')}/{LATEST}"
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read().decode("utf-8").strip()
    except (OSError, BeamIOError):
        if FileSystems.exists(path):
            raise
        return ""


def published_days(kind_dir: str) -> List[str]:
    """The days (YYYY-MM-DD, ascending) of <kind_dir>/dt=D folders holding _SUCCESS."""
    matches = FileSystems.match([f"{kind_dir.rstrip('/')}/dt=*/{SUCCESS}"])[0].metadata_list
    days = set()
    for m in matches:
        found = _DAY_FOLDER_RE.match(m.path.rstrip("/").split("/")[-2])
        if found:
            days.add(found.group(1))
    return sorted(days)


def update_latest(kind_dir: str, day: str, run_id: str) -> bool:
    """After `day` was published under kind_dir: LATEST := day when day >= the day LATEST
    names (a backfill of an older day leaves it). Returns whether LATEST was written."""
    current = read_latest(kind_dir)
    if current and day < current:
        return False
    write_atomic(f"{kind_dir.rstrip('/')}/{LATEST}", f"{day}\n".encode(), run_id)
    return True


def reset_latest(kind_dir: str, run_id: str, excluding: str = "") -> str:
    """LATEST := the newest day with _SUCCESS other than `excluding`; deleted when none is
    left. Returns the day it names now ('' when deleted)."""
    days = [d for d in published_days(kind_dir) if d != excluding]
    path = f"{kind_dir.rstrip('/')}/{LATEST}"
    if days:
        write_atomic(path, f"{days[-1]}\n".encode(), run_id)
        return days[-1]
    delete_tolerant([path] if FileSystems.exists(path) else [])
    return ""


def withdraw_day(output_dir: str, run_date: str) -> List[str]:
    """Unpublish day `run_date` (YYYY-MM-DD) of every kind under output_dir except the
    quarantine: `validated`, `cooccurrence`, `examples/<kind>`, `features/<kind>` lose
    <kind>/dt=<run_date>/_SUCCESS (readers follow it, so the day is gone for them; its
    files are removed by the day's next publish). When LATEST of a kind names that day it
    moves back to the newest day left (or is deleted). Returns the withdrawn kind folders
    relative to output_dir, sorted."""
    out = output_dir.rstrip("/")
    markers = [f"{out}/{kind}/dt={run_date}/{SUCCESS}" for kind in WITHDRAWN_KINDS]
    markers = [m for m in markers if FileSystems.exists(m)]
    for family in WITHDRAWN_FAMILIES:
        found = FileSystems.match([f"{out}/{family}/*/dt={run_date}/{SUCCESS}"])[0]
        markers += [m.path for m in found.metadata_list]
    withdrawn = []
    run_id = f"withdraw-{run_date}-{uuid.uuid4().hex[:8]}"
    for marker in sorted(set(markers)):
        kind_dir = marker[:-len(f"/dt={run_date}/{SUCCESS}")]
        # LATEST first: a crash in between leaves it older, never naming a withdrawn day,
        # and the marker still there for a rerun of the gate to withdraw.
        if read_latest(kind_dir) == run_date:
            reset_latest(kind_dir, run_id, excluding=run_date)
        delete_tolerant([marker])
        withdrawn.append(kind_dir[len(out) + 1:])
    return withdrawn
