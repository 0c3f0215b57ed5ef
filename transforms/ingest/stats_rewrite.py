"""Rewrites the statistics of days validated before a feature left them (the raw
`properties` text, issue 32): each `validation/dt=<day>/stats_*.tfrecord` without the
feature, and `stats.html` rendered again from them and the day's summary.json. The files
are rewritten, never deleted: the next day's drift check reads them. Each write is a
compare-and-swap on the generation read, so a rerun of the day that writes new files
meanwhile is kept (the day is reported as changed, and a second pass finds it clean).
Command: beam_jobs/rewrite_stats.py; docs/validation.md#statistics-written-before.
"""

import datetime as dt
import re
from typing import Dict, List, Optional, Sequence

from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import statistics_pb2

from transforms.common.stats_html import render_stats_html
from transforms.ingest.day_files import HTML_FILE, STATS_FILES, SUMMARY_FILE, VALIDATION_DIR, \
    day_dir, read_summary, stats_from_bytes, tfrecord_bytes
from transforms.publishing.store import store_for

RAW_FEATURES = ("properties",)      # features the statistics no longer hold
REWRITTEN, CLEAN, CHANGED = "rewritten", "clean", "changed while rewritten"
_DAY_RE = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/" + re.escape(SUMMARY_FILE) + r"$")


def without_features(stats: statistics_pb2.DatasetFeatureStatisticsList,
                     names: Sequence[str]) -> int:
    """Removes the top-level features named `names` from every dataset; how many it removed."""
    removed = 0
    for dataset in stats.datasets:
        keep = [f for f in dataset.features
                if not (len(f.path.step) == 1 and f.path.step[0] in names) and f.name not in names]
        removed += len(dataset.features) - len(keep)
        if len(keep) != len(dataset.features):
            del dataset.features[:]
            dataset.features.extend(keep)
    return removed


def validated_days(output_dir: str, first: Optional[str] = None,
                   last: Optional[str] = None) -> List[str]:
    """The days (YYYY-MM-DD) under <output_dir>/validation with a summary.json, in
    [first, last] when given."""
    pattern = FileSystems.join(output_dir, VALIDATION_DIR, "dt=*", SUMMARY_FILE)
    days = sorted(m.group(1) for meta in FileSystems.match([pattern])[0].metadata_list
                  for m in [_DAY_RE.search(meta.path)] if m)
    return [d for d in days if (first is None or d >= first) and (last is None or d <= last)]


def rewrite_day(output_dir: str, day: str, names: Sequence[str] = RAW_FEATURES) -> Dict:
    """{"day", "status" (rewritten, clean or changed while rewritten), "removed" per
    source} for one validated day."""
    directory = day_dir(output_dir, day)
    store = store_for(directory)
    read, stats, removed = {}, {}, {}
    for source, name in STATS_FILES.items():
        path = f"{directory}/{name}"
        read[path] = store.read(path)
        if read[path].data is None:
            raise FileNotFoundError(f"{path} does not exist: {day} has no statistics")
        stats[source] = stats_from_bytes(read[path].data, path)
        removed[source] = without_features(stats[source], names)
    result = {"day": day, "removed": removed}
    if not any(removed.values()):
        return dict(result, status=CLEAN)
    html_path = f"{directory}/{HTML_FILE}"
    html_read = store.read(html_path)
    try:
        summary = read_summary(directory)
    except FileNotFoundError:          # a rerun of the day removed it meanwhile
        return dict(result, status=CHANGED)
    page = render_stats_html(stats, summary).encode("utf-8")
    # The page first: a pass that stops after it finds the statistics still holding the
    # feature and writes both again; one that stopped after the statistics would find
    # the day clean and leave the page's top values.
    if store.write_if(html_path, page, html_read.generation, "text/html") is None:
        return dict(result, status=CHANGED)
    for source, name in STATS_FILES.items():
        path = f"{directory}/{name}"
        if store.write_if(path, tfrecord_bytes(stats[source].SerializeToString()),
                          read[path].generation, "application/octet-stream") is None:
            return dict(result, status=CHANGED)
    return dict(result, status=REWRITTEN)


def rewrite_days(output_dir: str, first: Optional[str] = None,
                 last: Optional[str] = None) -> List[Dict]:
    for day in (first, last):
        if day is not None:
            dt.date.fromisoformat(day)
    return [rewrite_day(output_dir, day) for day in validated_days(output_dir, first, last)]
