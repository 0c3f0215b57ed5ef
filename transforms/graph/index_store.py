"""The versioned article index: <output_dir>/article_index/v=NNNNNN/ and CURRENT.

An article's integer index is the same in every output of every day: the index is
append-only and never forks. Every version is published with the publishing protocol
and never withdrawn; CURRENT (6 digits and a newline) names the newest. A run reads
CURRENT while it runs (never at construction), extends that version, and right before
publishing version CURRENT + 1 checks that CURRENT has not moved, else it fails
(docs/graph.md#the-article-index-append-only-and-versioned).
The check and the CURRENT write are two object operations, not one transaction: two
runs that reach the publish step within the same instant could both pass the check
(docs/guarantees.md#not-guaranteed-yet).
"""

import re
from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.common.errors import Refusal
from transforms.common.sharding import shard_ids, split_by_shard
from transforms.publishing.files import READ_ERRORS, SUCCESS, write_atomic
from transforms.publishing.protocol import PublishFileSets
from transforms.publishing.readers import published_files
from transforms.publishing.retention import DEFAULT_KEEP_HOURS
from transforms.publishing.tfrecord import decode_examples, read_tfrecord_file

INDEX_KIND = "article_index"
CURRENT = "CURRENT"
_VERSION_RE = re.compile(r"^v=(\d{6})$")


def lookup_indexes(ids, index_ids: pa.Array, index_values: np.ndarray) -> np.ndarray:
    """The article index of each id from (index_ids, index_values) rows of the index;
    0 (reserved: unknown) for ids not among them and for nulls."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if len(index_ids) == 0 or len(ids) == 0:
        return np.zeros(len(ids), dtype=np.int64)
    where = pc.index_in(ids.cast(pa.string()), value_set=index_ids.cast(pa.string()))
    found = where.is_valid().to_numpy(zero_copy_only=False)
    positions = np.asarray(pc.fill_null(where, 0).to_numpy(zero_copy_only=False), np.int64)
    return np.where(found, np.asarray(index_values, np.int64)[positions], 0)


def split_index_chunk(chunk: Tuple[pa.Array, np.ndarray], num_parts: int
                      ) -> Iterator[Tuple[int, pa.Array, np.ndarray]]:
    """(article ids, indexes) -> (part, ids, indexes) per part the articles hash to
    (sharding.shard_ids of the id: the same part every stage gives the article)."""
    ids, index = chunk
    table = pa.table({"article_id": ids.cast(pa.string()), "index": pa.array(index, pa.int64())})
    for part, rows in split_by_shard(table, shard_ids(table.column("article_id"), num_parts),
                                     num_parts):
        yield part, rows.column("article_id").combine_chunks(), rows.column("index").to_numpy()


def read_index_file(path: str) -> Tuple[pa.Array, np.ndarray]:
    """One file of a published article index -> (article ids, indexes)."""
    batch = decode_examples(read_tfrecord_file(path))
    if not batch.num_rows:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    ids = batch.column(batch.schema.get_field_index("article_id")).flatten().cast(pa.string())
    index = batch.column(batch.schema.get_field_index("index")).flatten().to_numpy()
    return ids, index.astype(np.int64)


def index_root(output_dir: str) -> str:
    return f"{output_dir.rstrip('/')}/{INDEX_KIND}"


def version_dir(output_dir: str, version: int) -> str:
    if not 1 <= version <= 999_999:
        raise ValueError(f"article index version {version} out of range 1..999999")
    return f"{index_root(output_dir)}/v={version:06d}"


def read_current(output_dir: str) -> Optional[int]:
    """The version CURRENT names, None when there is none yet."""
    path = f"{index_root(output_dir)}/{CURRENT}"
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            text = handle.read().decode("utf-8").strip()
    except READ_ERRORS:
        if FileSystems.exists(path):
            raise
        return None
    if not re.fullmatch(r"\d{6}", text):
        raise ValueError(f"{path} holds {text!r}, not a 6-digit article index version")
    return int(text)


def current_index(output_dir: str, index_from: str = "") -> Dict:
    """What a run starts from (a pipeline step): {"version": CURRENT or None, "files": the
    index files of that version}. `index_from` (a published folder holding an "index"
    file set, e.g. a version or a graph day) replaces CURRENT's files for a run that
    starts an output_dir from elsewhere; the new version is still CURRENT + 1."""
    version = read_current(output_dir)
    if index_from:
        files = published_files(index_from, "index")
    elif version is None:
        files = []
    else:
        files = published_files(version_dir(output_dir, version), "index")
    return {"version": version, "files": files}


def next_version(base: Dict) -> int:
    return (base["version"] or 0) + 1


class IndexMovedError(Refusal):
    """CURRENT names another version than the one this run started from."""


def check_unmoved(output_dir: str, base_version: Optional[int]) -> None:
    """Refuse to publish when CURRENT moved since the run read it."""
    now = read_current(output_dir)
    if now != base_version:
        raise IndexMovedError(
            f"the article index moved while this run ran: it started from version "
            f"{base_version} but {index_root(output_dir)}/{CURRENT} now names {now}; another "
            f"run published meanwhile. Nothing of this run was published; run it again.")


def write_current(output_dir: str, version: int, run_id: str) -> None:
    write_atomic(f"{index_root(output_dir)}/{CURRENT}", f"{version:06d}\n".encode(), run_id)


def published_versions(output_dir: str) -> List[int]:
    """Versions with _SUCCESS, ascending."""
    root = index_root(output_dir)
    found = FileSystems.match([f"{root}/v=*/{SUCCESS}"])[0].metadata_list
    versions = []
    for meta in found:
        folder = meta.path[len(root) + 1:].split("/")[0]
        match = _VERSION_RE.match(folder)
        if match:
            versions.append(int(match.group(1)))
    return sorted(versions)


def base_version_of(final_dir: str) -> Optional[int]:
    """The version a run that publishes <root>/v=NNNNNN started from."""
    version = int(final_dir.rstrip("/")[-6:])
    return version - 1 if version > 1 else None


def _largest_index(piece) -> int:
    _, _, batch = piece
    column = batch.column(batch.schema.get_field_index("index"))
    return int(pc.max(column).as_py() or 0) if len(column) else 0


class ReadArticleIndex(beam.PTransform):
    """The article index a run extends, read while the pipeline runs: {"base": one
    current_index() dict, "known": (article ids, indexes) chunks of its files, one per
    file}."""

    def __init__(self, output_dir: str, index_from: str = ""):
        super().__init__()
        self._out, self._from = output_dir.rstrip("/"), index_from or ""

    def expand(self, pbegin):
        out, index_from = self._out, self._from
        base = (pbegin | "Start" >> beam.Create([None])
                | "ReadCurrent" >> beam.Map(lambda _: current_index(out, index_from)))
        known = (base | "ListFiles" >> beam.FlatMap(lambda b: b["files"])
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadFiles" >> beam.Map(read_index_file))
        return {"base": base, "known": known}


class PublishArticleIndex(beam.PTransform):
    """(index pieces, base) -> the version published. Pieces are ("index", key,
    RecordBatch with article_id, index) of a run that started from `base` (one
    current_index() dict); the output is one dict {"version", "parent", "vocab_size"} that
    the run's other publish steps take as a manifest field, so they publish after it."""

    def __init__(self, output_dir: str, run_date: str, gate=None,
                 target_shard_mb: float = 128.0, described=None,
                 keep_hours: float = DEFAULT_KEEP_HOURS):
        super().__init__()
        self._keep_hours = keep_hours
        self._out, self._day, self._gate = output_dir.rstrip("/"), run_date, gate
        self._target_shard_mb = target_shard_mb
        self._described = described

    def expand(self, inputs):
        pieces, base = inputs
        out = self._out
        version = base | "NextVersion" >> beam.Map(next_version)
        folder = version | "VersionFolder" >> beam.Map(lambda v: version_dir(out, v))
        parent = base | "ParentVersion" >> beam.Map(lambda b: b["version"])
        vocab = (pieces
                 | "LargestIndexOfPiece" >> beam.Map(_largest_index)
                 | "LargestIndex" >> beam.CombineGlobally(lambda values: max(values, default=0))
                 | "VocabSize" >> beam.Map(lambda largest: largest + 1))
        manifest = {"kind": INDEX_KIND, "run_date": self._day}
        published = pieces | "PublishVersion" >> PublishFileSets(
            f"{index_root(out)}/v=pending", manifest, self._gate, fmt="tfrecord",
            target_shard_mb=self._target_shard_mb,
            extra=dict({"version": version, "parent": parent, "vocab_size": vocab},
                       **({"input_provenance": self._described}
                          if self._described is not None else {})),
            file_sets=("index",), final_dir_from=folder, keep_hours=self._keep_hours,
            check=lambda final_dir: check_unmoved(out, base_version_of(final_dir)))

        def point_current(written):
            check_unmoved(out, written["parent"])
            write_current(out, written["version"], written["run_id"])
            return {"version": written["version"], "parent": written["parent"],
                    "vocab_size": written["vocab_size"]}

        return published | "PointCurrent" >> beam.Map(point_current)
