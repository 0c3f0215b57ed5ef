"""The features' time windows and lookback: the split boundary's windows of one day and
the plan of which earlier days' partials they read (docs/features.md#windows)."""

import datetime as dt
from typing import Dict

from apache_beam.io.filesystems import FileSystems

from schemas import features as F
from transforms.common.span import DaySpan
from transforms.ingest.day_files import read_summary
from transforms.publishing.files import SUCCESS
from transforms.publishing.readers import manifest_files, published_manifest

_DAY_US = 86_400_000_000


def feature_window(span: DaySpan, boundary_us: int, lookback_days: int) -> Dict:
    """The train and eval windows of a day in microseconds (the manifests' "window")."""
    return {"boundary_us": boundary_us, "end_us": span.end_us, "lookback_days": lookback_days,
            "train_window_us": [boundary_us - lookback_days * _DAY_US, boundary_us],
            "eval_window_us": [span.end_us - lookback_days * _DAY_US, span.end_us]
            if lookback_days else [span.start_us, span.end_us]}


def lookback_plan(output_dir: str, run_date: str, lookback_days: int) -> Dict:
    """Which earlier days' partials the windows use (pipeline step): {"files": [{entity,
    path, days_back, rows}], "used": [days], "skipped": [{day, reason}], "rows": n}. A day
    is used when its validation summary.json says blessed without an override (a day
    blessed only through --allow_anomalies is no baseline for drift or the backfill
    either) and its partials are published."""
    out = output_dir.rstrip("/")
    today = dt.date.fromisoformat(run_date)
    plan = {"files": [], "used": [], "skipped": [], "rows": 0}
    for days_back in range(1, lookback_days + 1):
        day = (today - dt.timedelta(days=days_back)).isoformat()
        daily_dir = f"{out}/features/{F.DAILY_DIR}/dt={day}"
        try:
            summary = read_summary(f"{out}/validation/dt={day}")
        except FileNotFoundError:
            plan["skipped"].append({"day": day, "reason": "not validated"})
            continue
        if summary.get("blessed") is not True:
            plan["skipped"].append({"day": day, "reason": "not blessed"})
            continue
        if summary.get("overridden") is True:
            plan["skipped"].append({"day": day, "reason": "overridden"})
            continue
        if not FileSystems.exists(f"{daily_dir}/{SUCCESS}"):
            plan["skipped"].append({"day": day, "reason": "no published partials"})
            continue
        manifest = published_manifest(daily_dir)
        for entity in F.DAILY_FILE_SETS:
            rows = {f["name"]: f["rows"] for f in manifest["file_sets"][entity]["files"]}
            for path in manifest_files(daily_dir, manifest, entity):
                count = rows[path.rsplit("/", 1)[1]]
                plan["files"].append({"entity": entity, "path": path, "days_back": days_back,
                                      "rows": count})
                plan["rows"] += count
        plan["used"].append(day)
    return plan
