"""Readers of published days: _SUCCESS -> run id -> manifest-<run_id>.json -> files; a
file that vanished under a reader (a newer publish) makes it start again once from
_SUCCESS (docs/publishing.md).
"""

import gzip
from typing import Dict, List

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from transforms.publishing.files import MANIFEST, READ_ERRORS, RUN_MANIFEST, SUCCESS, read_json
from transforms.publishing.tfrecord import decode_examples, read_tfrecord_file

def read_run_id(day_dir: str, missing_ok: bool = False) -> str:
    """The run id _SUCCESS holds ('' for a day published before run manifests).
    Raises FileNotFoundError naming the folder when nothing is published there."""
    path = f"{day_dir.rstrip('/')}/{SUCCESS}"
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read().decode("utf-8").strip()
    except READ_ERRORS as err:
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
            return read_json(path)
        except READ_ERRORS:
            if attempt or FileSystems.exists(path):
                raise
    raise AssertionError("unreachable")


def listed_names(manifest: Dict) -> List[str]:
    """Every file name a run manifest lists, over all its file sets (relative to the day
    folder; a manifest from before sizes were recorded lists bare names)."""
    return [f["name"] if isinstance(f, dict) else f
            for entry in (manifest.get("file_sets") or {}).values()
            for f in entry.get("files", [])]


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
        except READ_ERRORS:
            if attempt or all(FileSystems.exists(p) for p in paths):
                raise
    raise AssertionError("unreachable")


def read_jsonl_file(path: str) -> List[str]:
    """The lines of one GZIP JSON-lines file, split on \\n only (never on the other
    Unicode line breaks str.splitlines knows; transforms.publishing.writers escapes them)."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        text = gzip.decompress(handle.read()).decode("utf-8")
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


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
