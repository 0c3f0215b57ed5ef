"""A conditional store: the pointers of the publishing protocol (_SUCCESS, LATEST and
the article index's CURRENT) are moved by compare-and-swap
(docs/publishing.md#pointers-moved-by-compare-and-swap).

read(path) gives an object's bytes and its generation (an absent object is generation
0); write_if(path, data, generation) writes only if the object is still at that
generation (0: only if absent, so create-if-absent is the same call) and returns the new
generation, or None when another writer moved it first; delete_if likewise (True when
the object is gone afterwards, False when it is at another generation). One
implementation per scheme: local disk (a generation counter beside the object, under
fcntl.flock), gs:// (Cloud Storage's if_generation_match), and whatever a test
registers (register_store). The bytes a caller writes name the writer (a run id): a
write whose reply was lost and that the client retried comes back as a conflict, and
re-reading tells it that the object already holds its own bytes.
"""

import fcntl
import os
import uuid
from typing import Callable, Dict, NamedTuple, Optional

# Lock and counter files of the local store start with this prefix; readers follow
# _SUCCESS and manifests, and listings that clean a folder skip it.
CAS_PREFIX = "_cas-"


class Versioned(NamedTuple):
    data: Optional[bytes]   # None: absent
    generation: int         # 0: absent


class ConditionalStore:
    """read / write_if / delete_if on one scheme's objects."""

    def read(self, path: str) -> Versioned:
        raise NotImplementedError

    def write_if(self, path: str, data: bytes, generation: int,
                 content_type: str = "text/plain") -> Optional[int]:
        """Writes `data` if `path` is at `generation` (0: absent); the new generation, or
        None when it was not. `content_type` is what an object store serves it as."""
        raise NotImplementedError

    def delete_if(self, path: str, generation: int) -> bool:
        raise NotImplementedError


def _split(path: str):
    head, _, leaf = path.rstrip("/").rpartition("/")
    if not head or not leaf:
        raise ValueError(f"not an object path: {path!r}")
    return head, leaf


class LocalStore(ConditionalStore):
    """Local disk: `<dir>/_cas-<name>.generation` holds the object's generation and
    `<dir>/_cas-<name>.lock` is held with flock while one reads or moves it (the kernel
    releases it when a process dies). The counter counts writes, not contents: the same
    bytes written twice are two generations. An object written without the counter (by
    an earlier version of the suite) is generation 1. The counter is written before the
    object: a crash between the two leaves a generation no reader holds, so the next
    conditional write of the old generation fails instead of passing twice."""

    def _paths(self, path: str):
        head, leaf = _split(path)
        return f"{head}/{CAS_PREFIX}{leaf}.lock", f"{head}/{CAS_PREFIX}{leaf}.generation"

    def _locked(self, path: str, move: Callable):
        lock_path, counter_path = self._paths(path)
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                counter = _read_counter(counter_path)
                data = _read_or_none(path)
                current = 0 if data is None else (counter or 1)
                return move(data, current, max(counter, current), counter_path)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def read(self, path: str) -> Versioned:
        if not os.path.isdir(os.path.dirname(path.rstrip("/")) or "."):
            return Versioned(None, 0)
        return self._locked(path, lambda data, current, _, __: Versioned(data, current))

    def write_if(self, path: str, data: bytes, generation: int,
                 content_type: str = "text/plain") -> Optional[int]:
        def move(_, current, highest, counter_path):
            if current != generation:
                return None
            new = highest + 1
            _replace(counter_path, b"%d\n" % new)
            _replace(path, data)
            return new
        return self._locked(path, move)

    def delete_if(self, path: str, generation: int) -> bool:
        def move(data, current, highest, counter_path):
            if data is None:
                return True
            if current != generation:
                return False
            _replace(counter_path, b"%d\n" % (highest + 1))
            os.remove(path)
            return True
        return self._locked(path, move)


def _read_or_none(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _read_counter(path: str) -> int:
    data = _read_or_none(path)
    return int(data) if data and data.strip() else 0


def _replace(path: str, data: bytes) -> None:
    """Write `path` whole by a rename of a file unique to this writer."""
    head, leaf = _split(path)
    temporary = f"{head}/{CAS_PREFIX}tmp-{uuid.uuid4().hex}-{leaf}"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class GcsStore(ConditionalStore):
    """Cloud Storage through google-cloud-storage (which apache-beam[gcp] installs):
    generations are the objects' own, preconditions are if_generation_match. The client
    retries a conditional upload whose reply was lost; the retry then meets its own
    write as a newer generation, so a conflict is re-read before it is believed."""

    def __init__(self, client=None):
        self._client = client

    def client(self):
        if self._client is None:
            # Imported here: pipeline construction never loads a cloud client.
            from google.cloud import storage
            self._client = storage.Client()
        return self._client

    def _blob(self, path: str):
        if not path.startswith("gs://"):
            raise ValueError(f"not a gs:// path: {path!r}")
        bucket, _, name = path[len("gs://"):].partition("/")
        if not bucket or not name:
            raise ValueError(f"not an object path: {path!r}")
        return self.client().bucket(bucket).blob(name)

    def read(self, path: str) -> Versioned:
        from google.api_core import exceptions
        for _ in range(5):
            named = self._blob(path)
            blob = named.bucket.get_blob(named.name)
            if blob is None:
                return Versioned(None, 0)
            try:
                return Versioned(blob.download_as_bytes(if_generation_match=blob.generation),
                                 int(blob.generation))
            except (exceptions.PreconditionFailed, exceptions.NotFound):
                continue     # replaced or deleted between the two calls: read again
        raise RuntimeError(f"{path} kept changing while it was read")

    def write_if(self, path: str, data: bytes, generation: int,
                 content_type: str = "text/plain") -> Optional[int]:
        from google.api_core import exceptions
        blob = self._blob(path)
        try:
            blob.upload_from_string(data, content_type=content_type,
                                    if_generation_match=generation)
            return int(blob.generation)
        except exceptions.PreconditionFailed:
            now = self.read(path)
            return now.generation if now.data == data else None

    def delete_if(self, path: str, generation: int) -> bool:
        from google.api_core import exceptions
        try:
            self._blob(path).delete(if_generation_match=generation)
            return True
        except exceptions.PreconditionFailed:
            return False
        except exceptions.NotFound:   # gone already (or a retried delete found its own)
            return True


    def delete_all(self, paths) -> None:
        """Delete objects whatever their generation; one already gone is no error. One
        request per object, not Cloud Storage's batch API (which Beam's FileSystems
        uses, and which the tests' server does not speak)."""
        from google.api_core import exceptions
        for path in paths:
            try:
                self._blob(path).delete()
            except exceptions.NotFound:
                pass


_STORES: Dict[str, Callable[[], ConditionalStore]] = {"gs": GcsStore}
_MADE: Dict[str, ConditionalStore] = {}


def register_store(scheme: str, make: Callable[[], ConditionalStore]) -> None:
    """Serve `scheme://` paths with make() (the tests' fake object store registers)."""
    _STORES[scheme] = make
    _MADE.pop(scheme, None)


def store_for(path: str) -> ConditionalStore:
    """The conditional store of `path`'s scheme (a path without one is local)."""
    scheme = path.split("://", 1)[0] if "://" in path else ""
    if not scheme:
        return _MADE.setdefault("", LocalStore())
    if scheme not in _STORES:
        raise ValueError(f"no conditional store for {scheme}:// paths (known: "
                         f"{', '.join(sorted(_STORES))} and local paths)")
    if scheme not in _MADE:
        _MADE[scheme] = _STORES[scheme]()
    return _MADE[scheme]
