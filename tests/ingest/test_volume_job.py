"""The volume check through validate_events on generated days (tier 3).

The day's whole export is validated once; its validation folder, shifted, stands for four
blessed days before it (their statistics are the drift baseline, their summary.json the
volume level). Parts of the day are then validated in the same output folder, one after
another: a random part of its rows (the sample generator writes rows in time order, so
dropping whole files would drop whole hours and trip the hour drift check instead), and a
second UTC partition holding a third of its rows.
"""

import datetime as dt
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beam_jobs import validate_events
from datagen.events import generate_events, write_export_layout
from tests.helpers.jobs import LOCAL
from transforms.ingest import day_files
from transforms.ingest.volume import VOLUME, WINDOW_DAYS, check_volume

pytestmark = pytest.mark.jobs

DAY = dt.date(2026, 11, 26)          # a Seoul day: UTC partitions 2026-11-25 (9 h) and -26 (15 h)
ROWS = 4000
_DAY_US = 86_400_000_000


def shifted(summary: dict, days: int) -> dict:
    """A day's summary.json as if it were `days` later (its partitions move with it)."""
    moved = dict(summary, run_date=(DAY + dt.timedelta(days=days)).isoformat())
    partitions = summary["volume"]["by_partition"]
    moved["volume"] = dict(summary["volume"], by_partition={
        _later(day, days): counts for day, counts in partitions.items()})
    return moved


def _later(key: str, days: int) -> str:
    """A partition key `days` later ("none", rows without a timestamp, stays)."""
    if key == "none":
        return key
    return (dt.date.fromisoformat(key) + dt.timedelta(days=days)).isoformat()


def validate(root, name, table, run_date=DAY, *extra):
    """Writes `table` as an export and validates it into <root>/out; the summary.json."""
    events = root / name
    write_export_layout(table, str(events), null_partition=run_date)
    out = str(root / "out")
    try:
        validate_events.run(LOCAL + [f"--events={events}", f"--run_date={run_date}",
                                     f"--output_dir={out}", *extra])
    except Exception as err:          # the refusal; summary.json says why
        assert "not blessed" in str(err), err
    with open(os.path.join(day_files.day_dir(out, run_date.isoformat()),
                           day_files.SUMMARY_FILE)) as handle:
        return json.load(handle)


def keep(table: pa.Table, share: float, seed: int, partition: str = None) -> pa.Table:
    """A random `share` of the rows (of one UTC partition only, when named), in order."""
    rng = np.random.default_rng(seed)
    stamps = pc.fill_null(table.column("event_timestamp").cast(pa.int64()), 0).to_numpy()
    dates = np.array([(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).isoformat()
                      for d in np.floor_divide(stamps, _DAY_US)])
    among = np.flatnonzero(dates == partition) if partition else np.arange(table.num_rows)
    dropped = rng.choice(among, size=len(among) - round(share * len(among)), replace=False)
    return table.filter(pa.array(~np.isin(np.arange(table.num_rows), dropped)))


@pytest.fixture(scope="module")
def level(tmp_path_factory):
    """(root, the day's table, its whole summary): four blessed days at its level before it."""
    root = tmp_path_factory.mktemp("volume")
    table = generate_events(ROWS, DAY, seed=21).table
    whole = validate(root, "whole", table)
    out = str(root / "out")
    for back in range(1, 5):
        day = (DAY - dt.timedelta(days=back)).isoformat()
        shutil.copytree(day_files.day_dir(out, DAY.isoformat()), day_files.day_dir(out, day))
        with open(os.path.join(day_files.day_dir(out, day), day_files.SUMMARY_FILE), "w") as f:
            json.dump(shifted(whole, -back), f)
    return root, table, whole


def test_a_part_of_a_day_is_refused_and_an_override_sets_the_new_level(level):
    root, table, whole = level
    # The first day had no level: it passed, saying so.
    assert whole["blessed"] is True and whole["volume_check"]["checked"] is False
    assert whole["volume_check"]["note"].startswith("only 0 day(s) in the 7 days before")
    level_days = ["2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25"]

    forty = keep(table, 0.4, seed=1)
    refused = validate(root, "forty", forty)
    assert (refused["blessed"], refused["reasons"]) == (False, [VOLUME])
    check = refused["volume_check"]
    assert check["level_days"] == level_days and check["checked"] is True
    assert check["failed"] == ["client", "server", "2026-11-25", "2026-11-26"]
    for figure in check["figures"]:
        assert 0.3 < figure["ratio"] < 0.5, figure
    described = [a["description"] for a in refused["anomalies"] if a["environment"] == "DATASET"]
    assert len(described) == 4
    client = next(f for f in check["figures"] if f["name"] == "client")
    assert described[0] == (
        f"volume: {client['value']:,.0f} valid client rows, {client['ratio']:.2f} of the "
        f"median {client['median']:,.0f} of 4 day(s) (2026-11-22 to 2026-11-25); allowed 0.6 "
        "to 3 of it")
    assert client["median"] == whole["volume"]["by_source"]["client"]["rows_valid"]

    blessed = validate(root, "three_quarters", keep(table, 0.75, seed=2))
    assert (blessed["blessed"], blessed["reasons"]) == (True, []), blessed["anomalies"]
    assert blessed["volume_check"]["failed"] == []
    assert blessed["volume_check"]["level_days"] == level_days
    # The whole day (blessed above on its statistics, with no level yet) at that level:
    # every figure at its median.
    check = check_volume(whole["volume"], [], day_files.window_summaries(
        str(root / "out"), DAY, WINDOW_DAYS), DAY, 0.6, 3.0)
    assert check["level_days"] == level_days
    assert [(f["ratio"], f["passed"]) for f in check["figures"]] == [(1.0, True)] * 4

    short = validate(root, "short_partition", keep(table, 1 / 3, seed=3, partition="2026-11-26"))
    assert short["blessed"] is False and VOLUME in short["reasons"]
    assert "2026-11-26" in short["volume_check"]["failed"]
    assert "2026-11-25" not in short["volume_check"]["failed"]
    partition = next(f for f in short["volume_check"]["figures"] if f["name"] == "2026-11-26")
    assert 0.25 < partition["ratio"] < 0.42 and partition["span_hours"] == 15.0
    assert any(a["description"].startswith("volume: UTC partition 2026-11-26 (15 h of the span)")
               for a in short["anomalies"])

    overridden = validate(root, "forty_overridden", forty, DAY, "--allow_anomalies")
    assert (overridden["blessed"], overridden["overridden"], overridden["reasons"]) == (
        True, True, [VOLUME])

    # The next day at the new level: the same rows a day later.
    stamps = forty.column("event_timestamp")
    later = forty.set_column(forty.schema.get_field_index("event_timestamp"), "event_timestamp",
                             pc.add(stamps, pa.scalar(dt.timedelta(days=1))))
    next_day = validate(root, "next_day", later, DAY + dt.timedelta(days=1))
    assert (next_day["blessed"], next_day["reasons"]) == (True, []), next_day["anomalies"]
    check = next_day["volume_check"]
    assert check["level_days"] == ["2026-11-26"]
    assert check["level_since_override"] == "2026-11-26"
    assert [f["ratio"] for f in check["figures"]] == [1.0] * 4
