"""Session-wide pytest hooks.

A process that has built a tf.Transform pipeline (or loaded TensorFlow's SavedModel
machinery) can crash with SIGSEGV in TensorFlow's teardown at a normal interpreter exit,
turning a green run into exit 139. pytest_unconfigure runs after pytest's closing line
("N passed in ..."): it flushes and leaves with os._exit and the session's exit status,
the same exit path as every job (beam_jobs.launch.exit_now).
"""

import os
import sys

import pytest

from tests.helpers import features_runs
from tests.helpers.tiers import tier_problems

_STATUS = {"code": None}


def pytest_sessionfinish(session, exitstatus):
    _STATUS["code"] = int(exitstatus)
    features_runs.stop()


def pytest_unconfigure(config):
    code = _STATUS["code"]
    if code is None:       # pytest stopped before a session ran (e.g. --help)
        return
    # Other plugins' unconfigure hooks (the terminal summary is already written) would
    # run after this one; nothing of theirs is needed once the closing line is out.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream has nothing left to flush
            pass
    os._exit(code)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Collection fails when a test's tier is not exactly one of the three
    (tests/README.md): `make test-fast` (-m "not jobs") relies on every whole-job test
    saying so."""
    problems = tier_problems(items)
    if problems:
        message = ("every test needs exactly one tier marker (functions, composites or "
                   "jobs; tests/README.md):\n  " + "\n  ".join(problems))
        # pytest prints a UsageError after pytest_unconfigure, whose os._exit comes first.
        print(f"ERROR: {message}", file=sys.stderr, flush=True)
        raise pytest.UsageError(message)


def pytest_collection_finish(session):
    """When the features tests are collected, their two tf.Transform processes start now
    and run beside the tests before them (the fixture below waits for them)."""
    features_runs.start_if_needed(os.path.basename(str(item.fspath)) for item in session.items)


@pytest.fixture(scope="session")
def tft_subprocess_results():
    """The features runs' inputs, exit codes, logs and the preprocessing cases' results."""
    return features_runs.results()


@pytest.fixture(scope="session")
def marked_daily_run(tmp_path_factory):
    """One daily run (every stage) of the marked day (tests/helpers/jobs.py run_marked_day):
    (events table, export folder, output folder). Tests read it and never write to it."""
    from tests.helpers.jobs import run_marked_day
    return run_marked_day(tmp_path_factory.mktemp("marked_day"))


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """A real Cloud Storage server on loopback (tests/helpers/gcs_server.py), started
    once for the session by the first test that asks for it."""
    from tests.helpers.gcs_server import GcsServer
    server = GcsServer(str(tmp_path_factory.mktemp("gcs") / "server.log")).start()
    yield server
    server.stop()
