"""The features job's tf.Transform runs, shared by tests/features/test_features_job.py
and tests/features/test_preprocessing.py: two subprocesses started together, once a
session, when those tests are collected (tests/conftest.py), so they run beside the other
tests: `python -m beam_jobs.features` on FEATURES_DAY with a prepared lookback, and one
script that runs the preprocessing cases and then the job with a tightened schema (a
refused day)."""

import json
import os
import shutil
import subprocess
import sys

from tests.helpers.paths import ROOT

FEATURES_DAY = "2026-11-26"
FEATURES_TZ = "Asia/Seoul"
FEATURES_LOOKBACK = 3
FEATURES_SALT = b"features-test-salt"
# days before FEATURES_DAY: 1 and 3 published and blessed, 2 not blessed.
FEATURES_PUBLISHED_BACK = (1, 3)
FEATURES_UNBLESSED_BACK = 2

# The job, after the drift baseline of its inline validation is put in place: the blessed
# lookback days' validation folders get the statistics of FEATURES_DAY itself (validated
# into a scratch folder first), so the day has no drift against them; their own events
# are other catalogues (other seeds) whose drift would refuse it. Lookback days are
# blessed without an override (an overridden day is skipped by the lookback), so the
# newest of them is the baseline.
JOB_SCRIPT = """
import os, shutil, sys
from beam_jobs import features, launch, validate_events
from transforms.ingest import day_files
scratch, days, job_args = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
given = dict(a[2:].split("=", 1) for a in job_args)
validate_events.run([f"--events={given['events']}", f"--run_date={given['run_date']}",
                     f"--timezone={given['timezone']}", f"--output_dir={scratch}"])
for day in days:
    for name in day_files.STATS_FILES.values():
        shutil.copyfile(os.path.join(day_files.day_dir(scratch, given["run_date"]), name),
                        os.path.join(day_files.day_dir(given["output_dir"], day), name))
launch.main(features.run, job_args)
"""

REFUSED_SCRIPT = """
import sys
from schemas import features as F
from tests.helpers import preprocessing_cases
from beam_jobs import features, launch
preprocessing_cases.run_cases(sys.argv[1])
F.reviewed_schema_path = lambda: sys.argv[2]
launch.main(features.run, sys.argv[3:])
"""


def _prepare_features_inputs(work: str) -> dict:
    import datetime as dt
    import numpy as np
    import pyarrow as pa
    from datagen.events import generate_events, write_export_layout
    from schemas import contract
    from transforms.common.privacy import pseudonymize
    from transforms.common.span import day_span, split_boundary_us
    from transforms.features import partials as T
    from transforms.publishing.protocol import new_run_id, publish_day
    from transforms.publishing.writers import write_piece
    out = os.path.join(work, "out")
    today = dt.date.fromisoformat(FEATURES_DAY)
    tables = {}
    for back, seed in ((0, 11), (1, 12), (3, 13)):
        day = today - dt.timedelta(days=back)
        tables[back] = generate_events(1500, day, FEATURES_TZ, seed=seed, dirty_fraction=0.0,
                                       out_of_span_fraction=0.0).table
    write_export_layout(tables[0], os.path.join(work, "events"), today)
    for back in FEATURES_PUBLISHED_BACK:
        day = today - dt.timedelta(days=back)
        span = day_span(day, FEATURES_TZ)
        boundary = split_boundary_us(span.end_us, "time", 3.0)
        table = tables[back]
        # As the row checks publish them: legacy names canonical (item_click -> article_view).
        names = table.column("event_name").to_pylist()
        table = table.set_column(table.schema.get_field_index("event_name"), "event_name",
                                 pa.array([contract.LEGACY_ALIASES.get(n, n) for n in names],
                                          pa.string()))
        partials = T._partials_of(table, pseudonymize(table.column("user_id"), FEATURES_SALT),
                                  boundary)
        final = f"{out}/features/_daily/dt={day.isoformat()}"
        run_id = new_run_id()
        records = [r for entity, part in partials.items()
                   for r in write_piece(final, run_id, "parquet", entity, 0, part, 1 << 30)]
        publish_day(final, run_id, records, {"run_date": day.isoformat()}, ("articles", "users"))
    for back in (1, 2, 3):
        day = (today - dt.timedelta(days=back)).isoformat()
        os.makedirs(f"{out}/validation/dt={day}")
        blessed = back != FEATURES_UNBLESSED_BACK
        # Statistics of the blessed days are put in place by JOB_SCRIPT.
        with open(f"{out}/validation/dt={day}/summary.json", "w") as handle:
            json.dump({"run_date": day, "blessed": blessed, "overridden": False}, handle)
    ids = sorted(set(a for a in tables[0].column("article_id").to_pylist() if a))[:25]
    index = {article: i + 1 for i, article in enumerate(ids)}
    final = f"{out}/article_index/v=000001"
    run_id = new_run_id()
    batch = pa.RecordBatch.from_arrays([pa.array([a.encode() for a in ids], pa.binary()),
                                        pa.array(np.arange(1, len(ids) + 1), pa.int64())],
                                       ["article_id", "index"])
    publish_day(final, run_id, list(write_piece(final, run_id, "tfrecord", "index", 0, batch,
                                                1 << 30)), {}, ("index",))
    with open(f"{out}/article_index/CURRENT", "w") as handle:
        handle.write("000001\n")
    salt = os.path.join(work, "salt")
    with open(salt, "wb") as handle:
        handle.write(FEATURES_SALT)
    return {"out": out, "events": os.path.join(work, "events"), "salt": salt, "tables": tables,
            "index": index}


_RUNS: dict = {}
FEATURE_TEST_FILES = {"test_features_job.py", "test_preprocessing.py"}


def start_features_runs() -> dict:
    """Start (once) `python -m beam_jobs.features` on FEATURES_DAY with the lookback
    prepared above, and one script that runs tests/features/test_preprocessing.py's cases and then
    the job on the same day with a tightened schema (a refused day). They write their
    output to files (a pipe could fill and stall them) and run beside the other tests."""
    if _RUNS:
        return _RUNS
    import tempfile
    work = tempfile.mkdtemp(prefix="features-tft-")
    inputs = _prepare_features_inputs(work)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    common = [f"--events={inputs['events']}", f"--run_date={FEATURES_DAY}",
              f"--timezone={FEATURES_TZ}", f"--user_id_salt_file={inputs['salt']}"]
    job_log = open(os.path.join(work, "job.log"), "w")
    import datetime as dt
    baseline_days = ",".join(
        (dt.date.fromisoformat(FEATURES_DAY) - dt.timedelta(days=back)).isoformat()
        for back in FEATURES_PUBLISHED_BACK)
    job = subprocess.Popen(
        [sys.executable, "-c", JOB_SCRIPT, os.path.join(work, "baseline"), baseline_days,
         f"--output_dir={inputs['out']}", f"--features_lookback_days={FEATURES_LOOKBACK}"]
        + common,
        cwd=ROOT, env=env, stdout=job_log, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(ROOT, "schemas", "features_schema.pbtxt")) as handle:
        schema = handle.read()
    # Only ctr has a float domain: a CTR above 0.0001 breaks the tightened schema.
    assert schema.count("  float_domain { min: 0 }\n") == 1
    tightened = schema.replace("  float_domain { min: 0 }\n",
                               "  float_domain { min: 0 max: 0.0001 }\n")
    schema_path = os.path.join(work, "tightened_schema.pbtxt")
    with open(schema_path, "w") as handle:
        handle.write(tightened)
    cases_path = os.path.join(work, "cases.json")
    refused_out = os.path.join(work, "refused")
    refused_log = open(os.path.join(work, "refused.log"), "w")
    refused = subprocess.Popen(
        [sys.executable, "-c", REFUSED_SCRIPT, cases_path, schema_path,
         f"--output_dir={refused_out}", "--features_lookback_days=0"] + common,
        cwd=ROOT, env=env, stdout=refused_log, stderr=subprocess.STDOUT, text=True)
    _RUNS.update(work=work, inputs=inputs, job=job, refused=refused,
                 logs=(job_log, refused_log), cases_path=cases_path,
                 refused_out=refused_out, tightened=tightened)
    return _RUNS


def start_if_needed(test_files) -> None:
    """Start the two runs when any of `test_files` (basenames) needs them."""
    if set(test_files) & FEATURE_TEST_FILES:
        start_features_runs()


def stop() -> None:
    """Kill what still runs and remove the runs' folder (end of the session)."""
    if _RUNS:
        for name in ("job", "refused"):
            if _RUNS[name].poll() is None:
                _RUNS[name].kill()
        shutil.rmtree(_RUNS["work"], ignore_errors=True)


def results() -> dict:
    """The two runs' inputs, exit codes, logs and the preprocessing cases' results."""
    runs = start_features_runs()
    job_rc = runs["job"].wait(timeout=600)
    refused_rc = runs["refused"].wait(timeout=600)
    logs = []
    for handle in runs["logs"]:
        handle.close()
        with open(handle.name) as log:
            logs.append(log.read())
    with open(runs["cases_path"]) as handle:
        cases = json.load(handle)
    return dict(runs["inputs"], job_rc=job_rc, job_log=logs[0], refused_rc=refused_rc,
                refused_log=logs[1], refused_out=runs["refused_out"], cases=cases,
                tightened=runs["tightened"])
