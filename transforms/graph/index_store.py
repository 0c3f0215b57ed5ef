"""The versioned article index: <output_dir>/article_index/v=NNNNNN/ and CURRENT.

An article's integer index is the same in every output of every day: the index is
append-only and never forks, whichever jobs run at once (the graph, examples and daily
jobs all extend it). A run reads CURRENT and its generation while it runs (never at
construction) and makes version N = 1 + the largest of CURRENT and every committed
version; v=N is committed create-if-absent (never replaced), then CURRENT moves to N by
compare-and-swap from the generation read. A run that loses either race fails, and what
uses the index publishes only after the swap. A version off CURRENT's chain (an orphan)
is never read and its files go after the retention. --index_from only seeds a folder
without CURRENT (docs/graph.md#the-article-index-append-only-and-versioned).
"""

import datetime as dt
import re
from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.common.errors import Refusal
from transforms.common.sharding import shard_ids, split_by_shard
from transforms.publishing.files import SUCCESS, delete_tolerant, stored_sizes
from transforms.publishing.protocol import PublishFileSets
from transforms.publishing.readers import listed_names, published_files, published_manifest
from transforms.publishing.retention import DEFAULT_KEEP_HOURS
from transforms.publishing.runs import parse_stamp, run_id_time, utc_now
from transforms.publishing.store import store_for
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


def current_path(output_dir: str) -> str:
    return f"{index_root(output_dir)}/{CURRENT}"


def _version_named(path: str, data: Optional[bytes]) -> Optional[int]:
    if data is None:
        return None
    text = data.decode("utf-8").strip()
    if not re.fullmatch(r"\d{6}", text):
        raise ValueError(f"{path} holds {text!r}, not a 6-digit article index version")
    return int(text)


def read_pointer(output_dir: str) -> Tuple[Optional[int], int]:
    """(the version CURRENT names or None, CURRENT's generation: 0 when absent)."""
    path = current_path(output_dir)
    now = store_for(path).read(path)
    return _version_named(path, now.data), now.generation


def read_current(output_dir: str) -> Optional[int]:
    """The version CURRENT names, None when there is none yet."""
    return read_pointer(output_dir)[0]


class IndexMovedError(Refusal):
    """CURRENT moved since this run read it, or another run made the version it made."""


class IndexSeedRefused(Refusal):
    """--index_from given for an output folder whose index already has a CURRENT."""


def current_index(output_dir: str, index_from: str = "") -> Dict:
    """What a run starts from (a pipeline step, never at construction): {"version":
    CURRENT (None when there is none), "generation": CURRENT's generation, "next": the
    version the run makes (1 + the largest of CURRENT and every version with _SUCCESS,
    so an orphan's number is skipped), "files": the index files it extends, "seeded_from":
    index_from or None}. `index_from` (a published folder holding an "index" file set,
    e.g. a version or a graph day of another output folder) only seeds a folder that has
    no CURRENT yet; anywhere else the run is refused."""
    version, generation = read_pointer(output_dir)
    if index_from and version is not None:
        raise IndexSeedRefused(
            f"--index_from={index_from} only seeds an output folder that has no article "
            f"index yet, but {current_path(output_dir)} names version {version}. "
            "Extending from another index would give its articles indexes the versions "
            "here gave to others. Drop --index_from: the run extends CURRENT.")
    if index_from:
        files = published_files(index_from, "index")
    elif version is None:
        files = []
    else:
        files = published_files(version_dir(output_dir, version), "index")
    latest = max([version or 0] + published_versions(output_dir))
    return {"version": version, "generation": generation, "next": latest + 1,
            "files": files, "seeded_from": index_from or None}


def check_unmoved(output_dir: str, base: Dict) -> None:
    """Refuse, before its version is committed, a run whose CURRENT moved since it read it
    (an early check: the swap after the commit is what decides)."""
    version, generation = read_pointer(output_dir)
    if generation != base["generation"]:
        raise IndexMovedError(
            f"the article index moved while this run ran: it started from version "
            f"{base['version']} but {current_path(output_dir)} now names {version}; another "
            "run extended it meanwhile. This run published no index version and nothing "
            "that uses one; run it again.")


def point_current(output_dir: str, base: Dict, version: int) -> None:
    """CURRENT := `version` (just committed) by compare-and-swap from the generation the
    run read; a retried step that finds its own version there goes on. When another run
    moved CURRENT first, `version` is an orphan (never read, its files go after the
    retention) and the run fails: nothing of it that uses the index is published."""
    path = current_path(output_dir)
    store = store_for(path)
    if store.write_if(path, f"{version:06d}\n".encode(), base["generation"]) is not None:
        return
    now = _version_named(path, store.read(path).data)
    if now == version:
        return
    raise IndexMovedError(
        f"the article index moved while this run ran: it extended version {base['version']} "
        f"and published version {version}, but {path} now names {now}; another run "
        f"extended it first. Version {version} is an orphan: no reader follows it and its "
        "files go after the retention. Nothing of this run that uses the index was "
        "published; run it again.")


def chain_down_to(output_dir: str, version: Optional[int], lowest: int) -> List[int]:
    """`version` and its parents (from the versions' manifests), newest first, down to
    the first one below `lowest` (so the walk is as long as the versions it looks at)."""
    chain: List[int] = []
    while version is not None and version >= lowest:
        chain.append(version)
        parent = published_manifest(version_dir(output_dir, version)).get("parent")
        version = None if parent is None else int(parent)
    return chain


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


ORPHAN_REACH = 14   # the newest versions an index publish looks at for orphans


def sweep_orphans(output_dir: str, keep_hours: float, now: dt.datetime) -> List[str]:
    """Delete the index files of orphans (versions with _SUCCESS that are not on CURRENT's
    parent chain: left by a crash between a commit and its swap, or by a lost swap) that
    committed more than keep_hours ago; their manifest and _SUCCESS stay, so the record
    stays and the next runs keep skipping their numbers. Looks at the ORPHAN_REACH newest
    versions (a bounded walk): an orphan is always newer than the version it extended,
    and the next successful run makes a newer one. Returns the deleted paths."""
    versions = published_versions(output_dir)[-ORPHAN_REACH:]
    if not versions:
        return []
    on_chain = set(chain_down_to(output_dir, read_current(output_dir), versions[0]))
    cutoff = now - dt.timedelta(hours=keep_hours)
    deleted: List[str] = []
    for version in versions:
        if version in on_chain:
            continue
        folder = version_dir(output_dir, version)
        manifest = published_manifest(folder)
        since = parse_stamp(manifest.get("committed_at")) or \
            run_id_time(str(manifest.get("run_id", "")))
        if since is None or since > cutoff:
            continue
        stored = stored_sizes(folder)     # one listing, not a lookup per file
        present = [f"{folder}/{name}" for name in listed_names(manifest) if name in stored]
        delete_tolerant(present)
        deleted += present
    return deleted


def _largest_index(piece) -> int:
    _, _, batch = piece
    column = batch.column(batch.schema.get_field_index("index"))
    return int(pc.max(column).as_py() or 0) if len(column) else 0


def index_chunks_of(pieces, label: str = "IndexChunks"):
    """Graph pieces -> (article ids, indexes) chunks of their index file set: the index a
    run extended, for the stages of the same run that look articles up in it."""
    def chunk(piece):
        file_set, _, batch = piece
        if file_set != "index":
            return []
        ids = batch.column(batch.schema.get_field_index("article_id")).cast(pa.string())
        index = batch.column(batch.schema.get_field_index("index")).to_numpy()
        return [(ids, np.asarray(index, np.int64))]
    return pieces | label >> beam.FlatMap(chunk)


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
    current_index() dict). The run creates version base["next"] (create-if-absent: a
    version is never replaced), then moves CURRENT to it by compare-and-swap from the
    generation it read, then sweeps orphans; the output is one dict {"version",
    "parent", "vocab_size"} that the run's other publish steps take as a manifest field,
    so they publish only after the swap, on a version on CURRENT's chain."""

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
        out, keep_hours = self._out, self._keep_hours
        version = base | "NextVersion" >> beam.Map(lambda b: b["next"])
        folder = version | "VersionFolder" >> beam.Map(lambda v: version_dir(out, v))
        parent = base | "ParentVersion" >> beam.Map(lambda b: b["version"])
        seeded = base | "SeededFrom" >> beam.Map(lambda b: b["seeded_from"])
        vocab = (pieces
                 | "LargestIndexOfPiece" >> beam.Map(_largest_index)
                 | "LargestIndex" >> beam.CombineGlobally(lambda values: max(values, default=0))
                 | "VocabSize" >> beam.Map(lambda largest: largest + 1))
        manifest = {"kind": INDEX_KIND, "run_date": self._day}
        extra = {"version": version, "parent": parent, "vocab_size": vocab,
                 "seeded_from": seeded}
        if self._described is not None:
            extra["input_provenance"] = self._described
        published = pieces | "PublishVersion" >> PublishFileSets(
            f"{index_root(out)}/v=pending", manifest, self._gate, fmt="tfrecord",
            target_shard_mb=self._target_shard_mb, extra=extra, file_sets=("index",),
            final_dir_from=folder, keep_hours=keep_hours, create_only=True,
            check=lambda _, started: check_unmoved(out, started), check_input=base)

        def swap(written, started):
            point_current(out, started, written["version"])
            sweep_orphans(out, keep_hours, utc_now())
            return {"version": written["version"], "parent": written["parent"],
                    "vocab_size": written["vocab_size"]}

        return published | "PointCurrent" >> beam.Map(swap, beam.pvalue.AsSingleton(base))
