"""Tier 1: the conditional store (transforms/publishing/store.py) on every scheme it
serves: local disk, the tests' fake object store, and gs:// against a real Cloud
Storage server (fake-gcs-server on loopback)."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from tests.helpers.fake_object_store import FakeObjectStore
from tests.helpers.paths import ROOT
from transforms.publishing.store import CAS_PREFIX, GcsStore, LocalStore, Versioned, store_for

pytestmark = pytest.mark.functions


@pytest.fixture(params=["local", "fakeobj", "gs"])
def where(request, tmp_path):
    """(store, folder) of one scheme; each test gets a fresh folder."""
    if request.param == "local":
        return store_for(str(tmp_path / "x")), str(tmp_path / "day")
    if request.param == "fakeobj":
        FakeObjectStore.reset()
        return store_for("fakeobj://bucket/x"), "fakeobj://bucket/day"
    server = request.getfixturevalue("gcs_server")
    bucket = server.bucket("store-tests")
    return GcsStore(server.client()), f"{bucket}/{uuid.uuid4().hex}"


def test_each_scheme_has_its_store():
    assert type(store_for("/tmp/a/b")).__name__ == "LocalStore"
    assert type(store_for("gs://b/a")).__name__ == "GcsStore"
    assert type(store_for("fakeobj://b/a")).__name__ == "FakeConditionalStore"
    with pytest.raises(ValueError, match="no conditional store for s3:// paths"):
        store_for("s3://b/a")


def test_absent_is_generation_zero_and_create_if_absent_is_one_winner(where):
    store, folder = where
    path = f"{folder}/_SUCCESS"
    assert store.read(path) == Versioned(None, 0)
    first = store.write_if(path, b"run-a\n", 0)
    assert first and first > 0
    assert store.write_if(path, b"run-b\n", 0) is None
    assert store.read(path) == Versioned(b"run-a\n", first)


def test_compare_and_swap_moves_only_from_the_generation_read(where):
    store, folder = where
    path = f"{folder}/_SUCCESS"
    first = store.write_if(path, b"run-a\n", 0)
    second = store.write_if(path, b"run-b\n", first)
    assert second not in (None, first)
    assert store.write_if(path, b"run-c\n", first) is None        # stale: someone moved it
    assert store.read(path) == Versioned(b"run-b\n", second)
    third = store.write_if(path, b"run-b\n", second)              # same bytes, new generation
    assert third not in (None, first, second)
    assert store.read(path) == Versioned(b"run-b\n", third)


def test_delete_if_at_the_generation_read(where):
    store, folder = where
    path = f"{folder}/LATEST"
    generation = store.write_if(path, b"2026-11-26\n", 0)
    assert store.delete_if(path, generation) is True
    assert store.read(path) == Versioned(None, 0)
    assert store.delete_if(path, generation) is True                # absent stays absent
    again = store.write_if(path, b"2026-11-27\n", 0)                # create after a delete
    assert again and again != generation


@pytest.mark.parametrize("scheme", ["local", "fakeobj"])
def test_delete_if_refuses_a_stale_generation(scheme, tmp_path):
    # Not on fake-gcs-server: it does not enforce preconditions on deletes.
    FakeObjectStore.reset()
    path = str(tmp_path / "LATEST") if scheme == "local" else "fakeobj://bucket/LATEST"
    store = store_for(path)
    first = store.write_if(path, b"a\n", 0)
    second = store.write_if(path, b"b\n", first)
    assert store.delete_if(path, first) is False
    assert store.read(path) == Versioned(b"b\n", second)


def test_local_store_files_carry_the_prefix_and_a_legacy_object_is_generation_one(tmp_path):
    store = LocalStore()
    legacy = tmp_path / "_SUCCESS"
    legacy.write_bytes(b"old-run\n")                      # written before the store existed
    assert store.read(str(legacy)) == Versioned(b"old-run\n", 1)
    assert store.write_if(str(legacy), b"new-run\n", 0) is None
    assert store.write_if(str(legacy), b"new-run\n", 1) == 2
    assert sorted(os.listdir(tmp_path)) == sorted([
        "_SUCCESS", f"{CAS_PREFIX}_SUCCESS.generation", f"{CAS_PREFIX}_SUCCESS.lock"])
    assert store.read(str(tmp_path / "absent" / "_SUCCESS")) == Versioned(None, 0)
    assert not (tmp_path / "absent").exists()             # a read creates nothing


@pytest.mark.parametrize("scheme", ["local", "fakeobj"])
def test_racing_writers_of_one_generation_have_exactly_one_winner(scheme, tmp_path):
    FakeObjectStore.reset()
    path = str(tmp_path / "_SUCCESS") if scheme == "local" else "fakeobj://bucket/_SUCCESS"
    store = store_for(path)
    for round_ in range(5):
        base = store.read(path).generation
        start, results = threading.Barrier(8), {}

        def write(i):
            start.wait()
            results[i] = store.write_if(path, f"run-{round_}-{i}\n".encode(), base)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, g in results.items() if g is not None]
        assert len(winners) == 1
        assert store.read(path) == Versioned(f"run-{round_}-{winners[0]}\n".encode(),
                                             results[winners[0]])


HOLD_THE_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a+b")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_killed_holder_of_the_local_lock_does_not_keep_it(tmp_path):
    path = str(tmp_path / "_SUCCESS")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK,
                               str(tmp_path / f"{CAS_PREFIX}_SUCCESS.lock")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    done = {}
    writer = threading.Thread(target=lambda: done.update(g=LocalStore().write_if(path, b"r\n", 0)))
    writer.start()
    writer.join(0.5)
    assert writer.is_alive()                               # waits while the lock is held
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    writer.join(10)
    assert done == {"g": 1}


class _DropsOneReply(requests.Session):
    """Sends every request; the reply to the first upload is lost on the way back."""

    def __init__(self):
        super().__init__()
        self.dropped = 0

    def request(self, method, url, *args, **kwargs):
        reply = super().request(method, url, *args, **kwargs)
        if "/upload/" in url and not self.dropped:
            self.dropped += 1
            raise requests.exceptions.ConnectionError("reply lost")
        return reply


def test_gs_a_write_whose_reply_was_lost_is_found_on_reread(gcs_server):
    bucket = gcs_server.bucket("store-tests")
    session = _DropsOneReply()
    store = GcsStore(gcs_server.client(_http=session))
    path = f"{bucket}/{uuid.uuid4().hex}/_SUCCESS"
    generation = store.write_if(path, b"run-a\n", 0)
    assert session.dropped == 1
    assert generation == store.read(path).generation and generation > 0
    assert store.read(path).data == b"run-a\n"
    # Another writer's bytes at the generation it expected are still a conflict.
    assert GcsStore(gcs_server.client()).write_if(path, b"run-b\n", 0) is None
