"""The volume check of the gate: a day's valid rows per source, and per UTC partition as
valid rows per hour of the span it covers, against the median of the same figure over the
days before it that set the level. Plain functions over summary.json's "volume"
(transforms.ingest.quarantine.volume_summary); the rule and its reasons:
docs/validation.md#the-volume-check.
"""

import datetime as dt
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from schemas import contract

VOLUME = "volume"            # the gate's reason
WINDOW_DAYS = 7              # calendar days before run_date whose volume sets the level
MIN_LEVEL_DAYS = 3           # fewer such days (and no override): the check passes, saying so
SOURCE, PARTITION = "source", "partition"
# --min_volume_ratio and --max_volume_ratio by default.
DEFAULT_RATIOS = (0.6, 3.0)


def sets_the_level(summary: dict) -> bool:
    """A day's summary whose volume the next days are compared with: blessed without an
    override, or published with an override whose only reason was volume (an operator's
    override after a lasting change of volume). A summary written before the volume was
    recorded has no level to give."""
    if summary.get("blessed") is not True or not isinstance(summary.get("volume"), dict):
        return False
    if summary.get("overridden") is not True:
        return True
    return list(summary.get("reasons") or []) == [VOLUME]


def level_days(summaries: Dict[str, dict]) -> Tuple[List[str], Optional[str]]:
    """(the days whose volume sets the level, sorted; the volume override that starts it or
    None) from the window's summaries (YYYY-MM-DD -> summary.json). An override for volume
    starts a new level: the days before it no longer count."""
    days = sorted(day for day, summary in summaries.items() if sets_the_level(summary))
    overrides = [day for day in days if summaries[day].get("overridden") is True]
    if not overrides:
        return days, None
    return [day for day in days if day >= overrides[-1]], overrides[-1]


def day_figures(volume: dict, run_date: dt.date, missing: Sequence[str] = ()) -> Dict:
    """{(SOURCE, "client"|"server"): valid rows, (PARTITION, offset): valid rows per hour of
    the span} of one day's summary "volume". A partition is keyed by its UTC date's offset
    from the run date (-1 and 0 for a Seoul day), so that each day's first partition is
    compared with the days' first partitions. `missing` partitions give no figure, nor do
    the sources of a day that misses one (their totals lack its rows)."""
    figures = {}
    if not missing:
        for source in contract.SOURCES:
            counts = volume.get("by_source", {}).get(source, {})
            figures[(SOURCE, source)] = float(counts.get("rows_valid", 0))
    for day, counts in sorted(volume.get("by_partition", {}).items()):
        hours = counts.get("span_hours", 0) or 0
        if hours <= 0 or day in missing:
            continue        # rows of no span hour ("none", out of span) or a missing partition
        offset = (dt.date.fromisoformat(day) - run_date).days
        figures[(PARTITION, offset)] = counts.get("rows_valid", 0) / hours
    return figures


def _ratio(value: float, median: float) -> Optional[float]:
    if median > 0:
        return value / median
    return 1.0 if value == 0 else None          # None: above a median of zero


def check_volume(volume: dict, missing: Sequence[str], summaries: Dict[str, dict],
                 run_date: dt.date, min_ratio: float, max_ratio: float) -> dict:
    """summary.json's "volume_check" of a day: each figure of day_figures against the median
    of the level days' same figure, refused below `min_ratio` or above `max_ratio` of it.

    `summaries` are the summary.json of the WINDOW_DAYS days before `run_date` (any
    verdict; level_days picks). With fewer than MIN_LEVEL_DAYS level days and no volume
    override among them nothing is compared, and "note" says so; after an override one
    level day is enough. With `missing` partitions (read with --allow_missing_partitions)
    the present partitions are compared on their own and the missing ones named."""
    days, override = level_days(summaries)
    needed = 1 if override else MIN_LEVEL_DAYS
    levels = [day_figures(summaries[day]["volume"], dt.date.fromisoformat(day),
                          summaries[day].get("missing_partitions") or []) for day in days]
    figures = []
    for (scope, key), value in sorted(day_figures(volume, run_date, missing).items(),
                                      key=lambda kv: (kv[0][0] != SOURCE, str(kv[0][1]))):
        figure = {"scope": scope, "value": value}
        if scope == SOURCE:
            figure["name"] = key
        else:
            name = (run_date + dt.timedelta(days=key)).isoformat()
            figure.update(name=name, span_hours=volume["by_partition"][name]["span_hours"])
        values = [level[(scope, key)] for level in levels if (scope, key) in level]
        figure["level_days"] = len(values)
        if len(values) < needed:
            figure.update(median=None, ratio=None, passed=True)
        else:
            median = statistics.median(values)
            ratio = _ratio(value, median)
            figure.update(median=median, ratio=ratio,
                          passed=ratio is not None and min_ratio <= ratio <= max_ratio)
        figures.append(figure)
    notes = []
    if len(days) < needed:
        notes.append(f"only {len(days)} day(s) in the {WINDOW_DAYS} days before set the "
                     f"volume level (blessed, or overridden for volume alone); the check needs "
                     f"{MIN_LEVEL_DAYS} and passes")
    if override:
        notes.append(f"the level starts at {override}, a day overridden for volume")
    if missing:
        notes.append("missing partition(s) " + ", ".join(missing) + " (read with "
                     "--allow_missing_partitions): the sources are not compared, the present "
                     "partitions are")
    return {"level_days": days, "level_since_override": override,
            "checked": len(days) >= needed, "min_ratio": min_ratio, "max_ratio": max_ratio,
            "missing_partitions": list(missing), "figures": figures,
            "failed": [f["name"] for f in figures if not f["passed"]], "note": "; ".join(notes)}


def volume_descriptions(check: dict) -> List[str]:
    """One sentence per refused figure of a volume_check, with its figures."""
    days = check["level_days"]
    span = f"{days[0]} to {days[-1]}" if days else "no day"
    allowed = f"allowed {check['min_ratio']:g} to {check['max_ratio']:g} of it"
    found = []
    for figure in check["figures"]:
        if figure["passed"]:
            continue
        digits = 0 if figure["scope"] == SOURCE else 1
        median = f"{figure['median']:,.{digits}f}"
        ratio = f"above the median {median}" if figure["ratio"] is None else \
            f"{figure['ratio']:.2f} of the median {median}"
        level = f"{ratio} of {figure['level_days']} day(s) ({span}); {allowed}"
        if figure["scope"] == SOURCE:
            found.append(f"volume: {figure['value']:,.0f} valid {figure['name']} rows, {level}")
        else:
            found.append(f"volume: UTC partition {figure['name']} ({figure['span_hours']:g} h "
                         f"of the span) holds {figure['value']:,.1f} valid rows per hour, "
                         f"{level}")
    return found
