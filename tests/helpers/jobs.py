"""Running whole jobs in tests: the day they run, the local options, a generated day in
the export layout, and the validation summary a run wrote."""

import datetime as dt
import json
import os

from datagen.events import generate_events, write_export_layout
from tests.helpers.paths import SALT_FILE

RUN_DATE = "2026-11-26"
DAY = dt.date(2026, 11, 26)
# The features stage (tf.Transform) runs in tests/jobs/test_loaders.py's daily run and in
# tests/features/test_features_job.py; here the daily job runs the other stages.
LOCAL = ["--runner=FnApiRunner", f"--user_id_salt_file={SALT_FILE}",
         "--daily_stages=graph,examples"]


def write_day(root, n, seed, breakage=None, run_date=DAY):
    day = generate_events(n, run_date, seed=seed, breakage=breakage)
    write_export_layout(day.table, str(root), null_partition=run_date,
                        drop_columns=day.drop_columns)
    return day


def summary_of(out, run_date=RUN_DATE):
    with open(os.path.join(out, "validation", f"dt={run_date}", "summary.json")) as f:
        return json.load(f)
