"""Running whole jobs in tests: the day they run, the local options, a generated day in
the export layout, and the validation summary a run wrote."""

import datetime as dt
import json
import os

import pyarrow as pa

from datagen.events import generate_events, write_export_layout
from schemas import contract
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


# Free text a user typed, planted in `properties` of the marked day (docs/events.md#properties):
# it must reach no output but quarantine/ and validated/
# (tests/jobs/test_loaders.py::test_no_free_text_leaves_the_quarantine_and_the_validated_rows).
MARKER = "MARKER-7f3a-call-010-5555-0199"
PLANTED = {
    contract.SEARCH: [{"query": f"{MARKER} 자전거"}, {"query": "x", MARKER: MARKER}],
    contract.IMPRESSION: [{"surface": MARKER, "position": 2}],
    contract.ARTICLE_VIEW: [{"referrer": f"https://example.com/?q={MARKER}"}],
    contract.ARTICLE_SOLD: [{"channel": MARKER}],
    contract.ARTICLE_DELETED: [{"reason": MARKER}],
}


def plant_marker(table: pa.Table) -> pa.Table:
    """Rows 10 onwards of each event name above get a marked `properties`, and one search
    more gets the marker as text that is not JSON (quarantined)."""
    names = table.column("event_name").to_pylist()
    properties = table.column("properties").to_pylist()
    for name, objects in PLANTED.items():
        rows = [i for i, n in enumerate(names) if n == name][10:10 + 3 * len(objects)]
        for number, i in enumerate(rows):
            properties[i] = json.dumps(objects[number % len(objects)], ensure_ascii=False)
    properties[[i for i, n in enumerate(names) if n == contract.SEARCH][40]] = f"{{{MARKER}"
    return table.set_column(table.schema.get_field_index("properties"), "properties",
                            pa.array(properties, pa.string()))


def run_marked_day(root):
    """The marked day (3,000 generated rows, seed 7) through the daily job with every stage
    (features included): (the events table as written, its export folder, the output
    folder). Shared by tests/jobs/test_loaders.py and tests/jobs/test_determinism.py (its
    first run) through the session fixture `marked_daily_run`."""
    from beam_jobs import daily
    day = generate_events(3000, DAY, seed=7)
    table = plant_marker(day.table)
    events = str(root / "events")
    write_export_layout(table, events, null_partition=DAY, drop_columns=day.drop_columns)
    out = str(root / "out")
    daily.run(["--runner=FnApiRunner", f"--user_id_salt_file={SALT_FILE}",
               f"--events={events}", f"--run_date={RUN_DATE}", "--timezone=Asia/Seoul",
               f"--output_dir={out}"])
    return table.drop(list(day.drop_columns)), events, out
