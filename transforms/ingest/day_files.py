"""The files of one validated day, <output_dir>/validation/dt=<day>/: their names, the
one writer (summary.json last) and the readers (the schema, statistics, summary.json and
the last blessed day before a date). The layout and the verdict's meaning:
docs/validation.md.
"""

import datetime as dt
import json
import re
from typing import Dict, Optional

from apache_beam.io.filesystems import FileSystems
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from schemas import contract
from transforms.common.errors import Refusal
from transforms.publishing.files import write_bytes
from transforms.publishing.tfrecord import read_tfrecord_bytes, tfrecord_frame

VALIDATION_DIR = "validation"
STATS_FILES = {contract.CLIENT: "stats_client.tfrecord", contract.SERVER: "stats_server.tfrecord"}
ANOMALIES_FILES = {contract.CLIENT: "anomalies_client.pbtxt",
                   contract.SERVER: "anomalies_server.pbtxt"}
# The single file of earlier versions (two messages back to back, which
# tfdv.load_anomalies_text rejects); a rerun of such a day removes it.
LEGACY_ANOMALIES_FILE = "anomalies.pbtxt"
HTML_FILE = "stats.html"
SUMMARY_FILE = "summary.json"

_DAY_DIR_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/" + re.escape(SUMMARY_FILE) + r"$")


class DayNotBlessedError(Refusal):
    """The gate refused the day; its summary.json says why."""


def day_dir(output_dir: str, day: str) -> str:
    """`day` as YYYY-MM-DD."""
    return FileSystems.join(output_dir, VALIDATION_DIR, f"dt={day}")


def _read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


def load_schema(path: str) -> schema_pb2.Schema:
    return text_format.Parse(_read_text(path), schema_pb2.Schema())


def find_previous_blessed(output_dir: str, run_date: dt.date) -> Optional[str]:
    """The latest day (YYYY-MM-DD) before `run_date` whose summary.json says blessed
    without an override: a day blessed only through --allow_anomalies is published but
    never a drift baseline (its anomalies would become the next day's normal)."""
    pattern = FileSystems.join(output_dir, VALIDATION_DIR, "dt=*", SUMMARY_FILE)
    days = {}
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        found = _DAY_DIR_RE.search(metadata.path)
        if found and dt.date.fromisoformat(found.group(1)) < run_date:
            days[found.group(1)] = metadata.path
    for day in sorted(days, reverse=True):
        summary = read_summary(days[day].rpartition("/")[0])
        if summary["blessed"] is True and summary.get("overridden") is not True:
            return day
    return None


def window_summaries(output_dir: str, run_date: dt.date, days: int) -> Dict[str, Dict]:
    """The summary.json of each of the `days` calendar days before `run_date` that has one
    (YYYY-MM-DD -> summary), whatever its verdict."""
    found = {}
    for back in range(days, 0, -1):
        day = (run_date - dt.timedelta(days=back)).isoformat()
        path = FileSystems.join(day_dir(output_dir, day), SUMMARY_FILE)
        if FileSystems.exists(path):
            found[day] = read_summary(day_dir(output_dir, day))
    return found


def load_day_stats(output_dir: str, day: str) -> Dict[str, statistics_pb2.DatasetFeatureStatisticsList]:
    import tensorflow_data_validation as tfdv  # heavy; imported where it is used

    return {source: tfdv.load_statistics(FileSystems.join(day_dir(output_dir, day), name))
            for source, name in STATS_FILES.items()}


def tfrecord_bytes(record: bytes) -> bytes:
    """`record` framed as one TFRecord (length, masked CRC32C of it, data, masked CRC32C)."""
    return tfrecord_frame([record])


def stats_from_bytes(data: bytes, origin: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A statistics file's bytes (tfrecord_bytes of one DatasetFeatureStatisticsList)
    parsed, without TFDV; raises naming `origin` when the framing is broken."""
    [record] = read_tfrecord_bytes(data, origin)
    return statistics_pb2.DatasetFeatureStatisticsList.FromString(record)


def anomalies_text(anomalies: anomalies_pb2.Anomalies) -> str:
    """One environment's Anomalies in text form: exactly one message, so that
    tfdv.load_anomalies_text (text_format.Parse) reads the file back."""
    return text_format.MessageToString(anomalies)


def remove_summary(directory: str) -> str:
    """Deletes <directory>/summary.json if there is one; returns its path."""
    summary_path = FileSystems.join(directory, SUMMARY_FILE)
    if FileSystems.exists(summary_path):
        FileSystems.delete([summary_path])
    return summary_path


def write_day_outputs(directory: str, stats: Dict[str, statistics_pb2.DatasetFeatureStatisticsList],
                      anomalies: Dict[str, anomalies_pb2.Anomalies], html: str,
                      summary: dict) -> str:
    """Writes the day's files, summary.json last (after removing an older one, so a
    rerun that dies half-way leaves no stale verdict). Returns summary.json's path."""
    summary_path = remove_summary(directory)
    for source, name in STATS_FILES.items():
        write_bytes(FileSystems.join(directory, name),
                    tfrecord_bytes(stats[source].SerializeToString()))
    for source, name in ANOMALIES_FILES.items():
        write_bytes(FileSystems.join(directory, name), anomalies_text(anomalies[source]).encode())
    legacy = FileSystems.join(directory, LEGACY_ANOMALIES_FILE)
    if FileSystems.exists(legacy):
        FileSystems.delete([legacy])
    write_bytes(FileSystems.join(directory, HTML_FILE), html.encode("utf-8"))
    write_bytes(summary_path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary_path


def read_summary(validation_day_dir: str) -> Dict:
    """The summary.json of one validated day."""
    path = f"{validation_day_dir.rstrip('/')}/{SUMMARY_FILE}"
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} does not exist: the day was never validated")
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return json.loads(handle.read().decode("utf-8"))


def blessed_summary(validated_root: str, run_date: str) -> Dict:
    """Pipeline step: the validation summary of <root>/../validation/dt=<run_date>,
    which must say the day is blessed."""
    root = validated_root.rstrip("/").rpartition("/")[0]
    summary = read_summary(f"{root}/validation/dt={run_date}")
    if not summary.get("blessed"):
        reasons = ", ".join(summary.get("reasons") or []) or "none recorded"
        raise DayNotBlessedError(
            f"day {run_date} under {root} is not blessed (summary.json: blessed="
            f"{summary.get('blessed')}, reasons: {reasons}); refusing to build from it")
    return summary
