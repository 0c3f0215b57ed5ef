"""Publishing outputs: GZIP TFRecords of tf.train.Example and Parquet files are
written to a staging folder, then moved into place with a manifest and a
_SUCCESS marker by one final step that also waits for the day's gate.

Examples are encoded by tfx-bsl's Arrow-to-Example encoder (C++, no TensorFlow
import); the TFRecord framing (length, masked CRC32C) is written here.
"""

import gzip
import io
import json
import struct
import zlib
from typing import Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
GZIP_LEVEL = 1   # fastest; level 6 saves about 3% on these records

_MASK_DELTA = 0xA282EAD8


def _crc32c(data: bytes) -> int:
    import google_crc32c
    return google_crc32c.value(data)


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord_frame(records: Sequence[bytes]) -> bytes:
    """TFRecord framing of serialized records: for each, uint64 length, masked
    CRC32C of the length, the data, masked CRC32C of the data (little endian)."""
    import google_crc32c
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


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


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


def shard_name(file_set: str, shard: int, num_shards: int, suffix: str) -> str:
    return f"{file_set}-{shard:05d}-of-{num_shards:05d}{suffix}"


class StageFiles(beam.DoFn):
    """(file_set, shard, num_shards, RecordBatch or Table) -> a staged file.

    `fmt` "tfrecord" writes GZIP TFRecords of tf.train.Example; "parquet" writes
    Parquet. Outputs (file_set, file name, rows, feature spec)."""

    def __init__(self, staging_dir: str, fmt: str):
        if fmt not in ("tfrecord", "parquet"):
            raise ValueError(f"unknown staged file format {fmt!r}")
        self._staging_dir, self._fmt = staging_dir.rstrip("/"), fmt

    def process(self, element):
        file_set, shard, num_shards, data = element
        if self._fmt == "tfrecord":
            name = shard_name(file_set, shard, num_shards, ".tfrecord.gz")
            batch = data if isinstance(data, pa.RecordBatch) else \
                pa.Table.from_batches(data.to_batches()).combine_chunks().to_batches()[0]
            payload = gzip_bytes(tfrecord_frame(encode_examples(batch)))
            spec = feature_spec(batch.schema)
        else:
            import pyarrow.parquet as pq
            name = shard_name(file_set, shard, num_shards, ".parquet")
            sink = io.BytesIO()
            table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
            pq.write_table(table, sink, compression="snappy")
            payload = sink.getvalue()
            spec = {f.name: str(f.type) for f in table.schema}
        write_bytes(f"{self._staging_dir}/{name}", payload)
        yield file_set, name, data.num_rows, spec


def _delete_matching(pattern: str) -> None:
    found = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if found:
        FileSystems.delete(found)


def publish_files(staged: Iterable[Tuple[str, str, int, Dict]], staging_dir: str,
                  final_dir: str, manifest: Dict) -> Dict:
    """Replace final_dir's published files with the staged ones, then write the
    manifest and, last, _SUCCESS. Returns the manifest written."""
    staging_dir, final_dir = staging_dir.rstrip("/"), final_dir.rstrip("/")
    staged = sorted(staged)
    _delete_matching(f"{final_dir}/*")
    if not FileSystems.exists(final_dir):
        FileSystems.mkdirs(final_dir)
    if staged:
        FileSystems.rename([f"{staging_dir}/{name}" for _, name, _, _ in staged],
                           [f"{final_dir}/{name}" for _, name, _, _ in staged])
    _delete_matching(f"{staging_dir}/*")
    if FileSystems.exists(staging_dir):
        FileSystems.delete([staging_dir])
    file_sets: Dict[str, Dict] = {}
    for file_set, name, rows, spec in staged:
        entry = file_sets.setdefault(file_set, {"files": [], "rows": 0, "feature_spec": spec})
        entry["files"].append(name)
        entry["rows"] += rows
    manifest = dict(manifest, file_sets=file_sets)
    write_bytes(f"{final_dir}/{MANIFEST}",
                 (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    write_bytes(f"{final_dir}/{SUCCESS}", b"")
    return manifest


def staging_dir_for(final_dir: str) -> str:
    """<root>/<name>/dt=D -> <root>/<name>/_staging/dt=D (same filesystem, cheap renames)."""
    head, _, leaf = final_dir.rstrip("/").rpartition("/")
    return f"{head}/_staging/{leaf}"


class PublishFiles(beam.PTransform):
    """Staged-file records -> the published folder (one element: the manifest).

    `gate` is a PCollection with one element (the validation summary of a
    blessed day); publishing waits for it, so an unblessed day publishes nothing."""

    def __init__(self, final_dir: str, manifest: Dict, gate):
        super().__init__()
        self._final_dir, self._manifest, self._gate = final_dir, manifest, gate

    def expand(self, staged):
        final_dir, manifest = self._final_dir, self._manifest

        def publish(_, staged_files, gate):
            if not isinstance(gate, dict):
                raise ValueError(f"no blessed validation summary for {final_dir}; nothing "
                                 "published")
            extra = {"validation": {k: gate.get(k) for k in (
                "rows_read", "rows_valid", "rows_quarantined", "duplicates_dropped",
                "out_of_span", "blessed", "overridden")}}
            return publish_files(staged_files, staging_dir_for(final_dir), final_dir,
                                 dict(manifest, **extra))

        return (staged.pipeline
                | "StartPublish" >> beam.Create([None])
                | "MoveIntoPlace" >> beam.Map(publish,
                                              staged_files=beam.pvalue.AsList(staged),
                                              gate=beam.pvalue.AsSingleton(self._gate)))


def read_file_set(day_dir: str, file_set: str) -> List[Dict[str, list]]:
    """Every record of one published file set of a day folder (files in name order),
    as dicts of feature name -> list of values."""
    pattern = f"{day_dir.rstrip('/')}/{file_set}-*.tfrecord.gz"
    rows: List[Dict[str, list]] = []
    for path in sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list):
        records = read_tfrecord_file(path)
        if not records:
            continue
        batch = decode_examples(records)
        columns = {n: batch.column(i).to_pylist() for i, n in enumerate(batch.schema.names)}
        rows += [{n: columns[n][i] for n in columns} for i in range(batch.num_rows)]
    return rows


def load_index(path_or_dir: str):
    """(article ids, indexes) of a published index (a dt=... folder); raises if it has none."""
    files = sorted(m.path for m in FileSystems.match(
        [f"{path_or_dir.rstrip('/')}/index-*.tfrecord.gz"])[0].metadata_list)
    if not files:
        raise FileNotFoundError(f"no index-*.tfrecord.gz under {path_or_dir}")
    ids, index = [], []
    for path in files:
        batch = decode_examples(read_tfrecord_file(path))
        if batch.num_rows:
            ids.append(batch.column(batch.schema.get_field_index("article_id")).flatten()
                       .cast(pa.string()))
            index.append(batch.column(batch.schema.get_field_index("index")).flatten()
                         .to_numpy())
    if not ids:
        return pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
    return pa.concat_arrays(ids), np.concatenate(index).astype(np.int64)


def latest_day_before(root: str, run_date: str, marker: str) -> str:
    """The latest <root>/dt=D folder with D < run_date holding `marker`, or ''."""
    matches = FileSystems.match([f"{root.rstrip('/')}/dt=*/{marker}"])[0].metadata_list
    days = sorted({m.path.rstrip("/").split("/")[-2][3:] for m in matches})
    days = [d for d in days if d < run_date]
    return f"{root.rstrip('/')}/dt={days[-1]}" if days else ""


def previous_index(output_dir: str, run_date: str, index_from: str = ""):
    """The article index to continue from: --index_from, else the latest
    published day before run_date under <output_dir>/cooccurrence, else empty."""
    source = index_from or latest_day_before(f"{output_dir.rstrip('/')}/cooccurrence",
                                             run_date, SUCCESS)
    if not source:
        return pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
    return load_index(source)
