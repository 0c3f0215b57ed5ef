"""Files of the publishing protocol: their names, whole-file writes, atomic replacement
and tolerant deletion, locally or on an object store through Beam's FileSystems
(docs/publishing.md).
"""

import json
import uuid
from typing import Dict, Sequence

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem
from google.api_core import exceptions as api_errors

from transforms.publishing.store import store_for

# What reading a file that is not there raises: OSError locally, and on gs:// the
# google-cloud-storage client's NotFound (Beam's gcsio does not turn it into an OSError).
READ_ERRORS = (OSError, BeamIOError, api_errors.NotFound)

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
    """Write `data` as is (no compression by file suffix), locally or on GCS, served as
    `mime_type` by an object store."""
    with FileSystems.create(path, mime_type=mime_type,
                            compression_type="uncompressed") as handle:
        handle.write(data)


RUN_MANIFEST = "manifest-{run_id}.json"
# Written by a withdrawal just before it deletes _SUCCESS: when the run it names was
# withdrawn (retention keeps that run's files as long as a replaced run's).
WITHDRAWN = "withdrawn-{run_id}.json"
TMP_PREFIX = "_tmp-"  # local atomic writes: _tmp-<run_id>-<uuid>-<name>, renamed over <name>


def is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def write_atomic(path: str, data: bytes, run_id: str) -> None:
    """Replace `path` so that a reader sees the old content or the new, never a part.
    One object write is atomic on an object store; locally a temporary file (unique to
    this writer) is renamed over the target (POSIX rename replaces atomically)."""
    if not is_local(path):
        write_bytes(path, data)
        return
    head, _, leaf = path.rpartition("/")
    temporary = f"{head}/{TMP_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}-{leaf}"
    write_bytes(temporary, data)
    FileSystems.rename([temporary], [path])


def delete_tolerant(paths: Sequence[str]) -> None:
    """Delete `paths`; a file already gone (deleted by a concurrent run) is not an error."""
    if not paths:
        return
    if all(p.startswith("gs://") for p in paths):
        store_for(paths[0]).delete_all(paths)
        return
    try:
        FileSystems.delete(list(paths))
    except BeamIOError:
        left = [p for p in paths if FileSystems.exists(p)]
        if left:
            FileSystems.delete(left)


def read_bytes(path: str) -> bytes:
    """A file's bytes as stored (no decompression by suffix)."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def read_json(path: str) -> Dict:
    return json.loads(read_bytes(path).decode("utf-8"))


def stored_sizes(final_dir: str) -> Dict[str, int]:
    """Name (relative to final_dir) -> size of every file under it, in one listing."""
    prefix = f"{final_dir}/"
    return {m.path[len(prefix):]: m.size_in_bytes
            for m in FileSystems.match([f"{final_dir}/**"])[0].metadata_list
            if m.path.startswith(prefix)}
