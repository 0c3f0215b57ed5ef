"""A fake object store for tests, registered with Beam as the `fakeobj://` scheme.

Like GCS it is a flat map of object name -> bytes: no directories (mkdirs does
nothing, a "folder" exists when some object name starts with it), an object
appears whole when its writer closes, `*` in a pattern does not cross '/', and a
rename is a copy then a delete. Its fault injector crashes the k-th write, rename
or delete (counted together, from 1) with `Crash`, which no publishing code catches:
the process dies there.

Like GCS, every write gives the object a new generation (one counter for the whole
store) and FakeConditionalStore moves an object only if it is still at the generation
read (transforms/publishing/store.py).

Beam finds a FileSystem by its scheme() among FileSystem's subclasses, so importing
this module registers it, and its conditional store with the publishing protocol.
State lives in the class: Beam makes a new instance per call.
"""

import io
import posixpath
import threading
from typing import Dict, Optional

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

from transforms.publishing.store import ConditionalStore, Versioned, register_store

SCHEME = "fakeobj"


class Crash(Exception):
    """An injected fault: the process stops at this operation."""


class _Upload(io.BytesIO):
    """A write channel: the object is stored whole on close (nothing on a crash)."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            data = self.getvalue()
            super().close()
            FakeObjectStore.operation("write", self._path)
            FakeObjectStore.put(self._path, data)


class FakeObjectStore(FileSystem):
    objects: Dict[str, bytes] = {}
    generations: Dict[str, int] = {}
    last_generation = 0
    lock = threading.RLock()
    operations = 0                 # writes + renames + deletes since reset()
    crash_at: Optional[int] = None  # the operation number that crashes
    log = []                       # (kind, path) of every operation

    @classmethod
    def scheme(cls):
        return SCHEME

    # ---------------------------------------------------------------- test controls

    @classmethod
    def reset(cls, objects=None):
        with cls.lock:
            cls.objects, cls.generations = {}, {}
            for name, data in (objects or {}).items():
                cls.put(name, data)
            cls.operations, cls.crash_at, cls.log = 0, None, []

    @classmethod
    def put(cls, path: str, data: bytes) -> int:
        """Store an object whole under a new generation."""
        with cls.lock:
            cls.last_generation += 1
            cls.objects[path], cls.generations[path] = data, cls.last_generation
            return cls.last_generation

    @classmethod
    def drop(cls, path: str) -> bool:
        with cls.lock:
            cls.generations.pop(path, None)
            return cls.objects.pop(path, None) is not None

    @classmethod
    def inject(cls, crash_at: Optional[int]):
        """Crash at the crash_at-th operation from now (None: no fault)."""
        with cls.lock:
            cls.operations, cls.crash_at, cls.log = 0, crash_at, []

    @classmethod
    def operation(cls, kind: str, path: str):
        with cls.lock:
            cls.operations += 1
            cls.log.append((kind, path))
            if cls.crash_at is not None and cls.operations == cls.crash_at:
                raise Crash(f"injected crash at operation {cls.operations}: {kind} {path}")

    @classmethod
    def names_under(cls, prefix: str):
        with cls.lock:
            return sorted(k[len(prefix):] for k in cls.objects if k.startswith(prefix))

    # ---------------------------------------------------------------- FileSystem

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        head, tail = path.rsplit("/", 1)
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        with self.lock:
            items = sorted(self.objects.items())
        for name, data in items:
            if name.startswith(dir_or_prefix):
                yield FileMetadata(name, len(data), 0.0)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return _Upload(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        with self.lock:
            if path not in self.objects:
                raise FileNotFoundError(f"no object {path}")
            return io.BytesIO(self.objects[path])

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            self.operation("write", destination)
            with self.lock:
                self.put(destination, self.objects[source])

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            self.operation("rename", f"{source} -> {destination}")
            with self.lock:
                if source not in self.objects:
                    raise BeamIOError("Rename operation failed",
                                      {(source, destination): FileNotFoundError(source)})
                self.put(destination, self.objects[source])   # copy ...
                self.drop(source)                             # ... then delete

    def exists(self, path):
        with self.lock:
            folder = path.rstrip("/") + "/"
            return path in self.objects or any(k.startswith(folder) for k in self.objects)

    def size(self, path):
        return len(self.objects[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(hash(self.objects[path]))

    def metadata(self, path):
        with self.lock:
            if path not in self.objects:
                raise BeamIOError("Metadata operation failed", {path: FileNotFoundError(path)})
            return FileMetadata(path, len(self.objects[path]), 0.0)

    def delete(self, paths):
        missing = {}
        for path in paths:
            self.operation("delete", path)
            if not self.drop(path):
                missing[path] = FileNotFoundError(path)
        if missing:
            raise BeamIOError("Delete operation failed", missing)


class FakeConditionalStore(ConditionalStore):
    """Compare-and-swap on the fake store's generations; its writes and deletes count as
    operations of the fault injector, like FileSystems' own."""

    def read(self, path):
        with FakeObjectStore.lock:
            return Versioned(FakeObjectStore.objects.get(path),
                             FakeObjectStore.generations.get(path, 0))

    def write_if(self, path, data, generation, content_type="text/plain"):
        FakeObjectStore.operation("write", path)
        with FakeObjectStore.lock:
            if FakeObjectStore.generations.get(path, 0) != generation:
                return None
            return FakeObjectStore.put(path, data)

    def delete_if(self, path, generation):
        FakeObjectStore.operation("delete", path)
        with FakeObjectStore.lock:
            now = FakeObjectStore.generations.get(path, 0)
            if now and now != generation:
                return False
            FakeObjectStore.drop(path)
            return True


register_store(SCHEME, FakeConditionalStore)


def patch_local_faults(monkeypatch) -> None:
    """The same fault injector (FakeObjectStore.inject) for local paths: FileSystems'
    create (a write counts when its handle closes; a crash there leaves the file
    truncated to half), rename and delete (one operation per path), and the local
    conditional store's write_if and delete_if count and crash."""
    from apache_beam.io.filesystems import FileSystems
    create, rename, delete = FileSystems.create, FileSystems.rename, FileSystems.delete

    class Handle:
        def __init__(self, path, handle):
            self._path, self._handle = path, handle

        def write(self, data):
            return self._handle.write(data)

        def flush(self):
            self._handle.flush()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        def close(self):
            if self._handle.closed:
                return
            try:
                FakeObjectStore.operation("write", self._path)
            except Crash:
                self._handle.flush()
                self._handle.truncate(self._handle.tell() // 2)
                self._handle.close()
                raise
            self._handle.close()

    def counted_create(path, *args, **kwargs):
        return Handle(path, create(path, *args, **kwargs))

    def counted_rename(sources, destinations):
        for source, destination in zip(sources, destinations):
            FakeObjectStore.operation("rename", f"{source} -> {destination}")
            rename([source], [destination])

    def counted_delete(paths):
        failed = {}
        for path in paths:
            FakeObjectStore.operation("delete", path)
            try:
                delete([path])
            except BeamIOError as err:
                failed.update(err.exception_details)
        if failed:
            raise BeamIOError("Delete operation failed", failed)

    monkeypatch.setattr(FileSystems, "create", staticmethod(counted_create))
    monkeypatch.setattr(FileSystems, "rename", staticmethod(counted_rename))
    monkeypatch.setattr(FileSystems, "delete", staticmethod(counted_delete))

    # The local conditional store moves pointers with its own file operations: each
    # conditional write or delete counts (and can crash) before it happens, as on the
    # fake store.
    from transforms.publishing.store import LocalStore
    write_if, delete_if = LocalStore.write_if, LocalStore.delete_if

    def counted_write_if(self, path, data, generation):
        FakeObjectStore.operation("write", path)
        return write_if(self, path, data, generation)

    def counted_delete_if(self, path, generation):
        FakeObjectStore.operation("delete", path)
        return delete_if(self, path, generation)

    monkeypatch.setattr(LocalStore, "write_if", counted_write_if)
    monkeypatch.setattr(LocalStore, "delete_if", counted_delete_if)
