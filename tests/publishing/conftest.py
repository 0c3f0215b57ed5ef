"""What the publishing tests share: a day folder on each store the protocol serves."""

import pytest

from tests.helpers.fake_object_store import FakeObjectStore, patch_local_faults


@pytest.fixture(params=["local", "fakeobj"])
def day(request, tmp_path, monkeypatch):
    """A day folder on the local disk or on the fake object store, faults injectable."""
    FakeObjectStore.reset()
    if request.param == "local":
        patch_local_faults(monkeypatch)
        yield str(tmp_path / "out" / "cooccurrence" / "dt=2026-11-26")
    else:
        yield "fakeobj://bucket/out/cooccurrence/dt=2026-11-26"
    FakeObjectStore.inject(None)
