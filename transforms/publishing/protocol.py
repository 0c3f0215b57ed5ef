"""The publishing protocol (docs/publishing.md): a run's pieces are streamed into the
day's folder under names holding its run id, then one step writes the run manifest,
manifest.json, _SUCCESS (the run id, last: readers follow it), moves LATEST and deletes
what the run does not list. PublishFileSets is the composite; publish_day its last step.
"""

import datetime as dt
import json
import os
import uuid
from typing import Dict, Iterable, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.common.version import suite_fields
from transforms.publishing.files import MANIFEST, RUN_MANIFEST, SUCCESS, TMP_PREFIX, \
    delete_tolerant, is_local, read_json, write_atomic
from transforms.publishing.latest import split_day_folder, update_latest
from transforms.publishing.readers import read_run_id
from transforms.publishing.writers import CHUNK_ROWS, FORMATS, FileRecord, WritePieces, \
    bytes_of_mb, require_blessed

def new_run_id() -> str:
    """A run id unique to one construction of a publishing step: UTC time + random hex."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:8]}"


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


def remove_unlisted(final_dir: str, run_id: str, keep: Iterable[str]) -> List[str]:
    """Delete every file under final_dir that is not in `keep` (names relative to it),
    except this run's own in-flight temporary files and the files of the run _SUCCESS
    names now, if another run has taken over meanwhile. Returns what was deleted."""
    final_dir = final_dir.rstrip("/")
    keep = set(keep)
    current = read_run_id(final_dir, missing_ok=True)
    if current and current != run_id:
        keep |= set(_listed_names(read_json(f"{final_dir}/{RUN_MANIFEST.format(run_id=current)}")))
        keep |= {RUN_MANIFEST.format(run_id=current)}
    prefix = f"{final_dir}/"
    found = [m.path for m in FileSystems.match([f"{final_dir}/**"])[0].metadata_list]
    stale = sorted(p for p in found if p.startswith(prefix) and p[len(prefix):] not in keep
                   and not p[len(prefix):].startswith(f"{TMP_PREFIX}{run_id}-"))
    delete_tolerant(stale)
    if is_local(final_dir):
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
        self._target_bytes = bytes_of_mb(target_shard_mb)
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
