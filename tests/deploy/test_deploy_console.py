"""A job's console: nothing but its own messages on a good run (no TensorFlow start-up
lines, no Beam crcmod warning, no TFDV IPython notice); with --verbose they are kept."""

import os
import subprocess
import sys

import pytest
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.jobs



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("console")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    subprocess.run([sys.executable, "-m", "datagen.events", "--rows", "600", "--run_date",
                    "2026-11-26", "--timezone", "Asia/Seoul", "--seed", "3", "--out_dir",
                    str(work / "events")], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    procs = {}
    for mode in ("quiet", "verbose"):
        argv = [sys.executable, "-m", "beam_jobs.validate_events",
                f"--events={work / 'events'}", "--run_date=2026-11-26",
                f"--output_dir={work / mode}"] + (["--verbose"] if mode == "verbose" else [])
        procs[mode] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    out = {}
    for mode, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[mode] = (proc.returncode, stdout, stderr)
    return out


def test_a_good_run_prints_nothing_else(runs):
    assert runs["quiet"] == (0, "", "")


def test_verbose_keeps_the_library_lines(runs):
    code, _, stderr = runs["verbose"]
    assert code == 0
    assert "Unable to import IPython" in stderr
    assert "INFO:" in stderr
    # crcmod is installed (apache-beam[tfrecord]), so Beam has nothing to warn about.
    assert "crcmod package not found" not in stderr
