"""The volume check of the gate (transforms/ingest/volume.py), tier 1: the level days, the
figures of a day, the check and its sentences, the gate's reason, and the window read."""

import datetime as dt
import json
import os

import pytest

from transforms.common.span import day_span
from transforms.ingest import day_files
from transforms.ingest.quarantine import partition_hours
from transforms.ingest.validation import ANOMALIES, EMPTY_DAY, gate_anomalies, gate_decision
from transforms.ingest.volume import PARTITION, SOURCE, VOLUME, check_volume, day_figures, \
    level_days, sets_the_level, volume_descriptions

pytestmark = pytest.mark.functions

RUN = dt.date(2026, 11, 26)
SEOUL = partition_hours(day_span(RUN, "Asia/Seoul"))     # {"2026-11-25": 9.0, "2026-11-26": 15.0}


def volume(client, server, first, second, day=RUN, hours=None):
    """A summary "volume" of a Seoul day: valid rows per source and in its two partitions."""
    hours = hours or partition_hours(day_span(day, "Asia/Seoul"))
    earlier, later = sorted(hours)
    return {"by_source": {"client": {"rows_read": client + 5, "rows_valid": client},
                          "server": {"rows_read": server, "rows_valid": server}},
            "by_partition": {earlier: {"rows_read": first, "rows_valid": first,
                                       "span_hours": hours[earlier]},
                             later: {"rows_read": second + 5, "rows_valid": second,
                                     "span_hours": hours[later]},
                             "none": {"rows_read": 3, "rows_valid": 0, "span_hours": 0.0}}}


def summary(day, scale=1.0, blessed=True, overridden=False, reasons=(), second=None):
    """summary.json of a day `scale` times the level of 900 client, 100 server rows
    (300 in its first partition, 700 in its second, or `second`)."""
    day = dt.date.fromisoformat(day)
    first = round(300 * scale)
    second = round(700 * scale) if second is None else second
    client = round(0.9 * (first + second))
    return {"run_date": day.isoformat(), "blessed": blessed, "overridden": overridden,
            "reasons": list(reasons), "missing_partitions": [],
            "volume": volume(client, first + second - client, first, second, day)}


def week(*days, **kwargs):
    return {day: summary(day, **kwargs) for day in days}


FOUR = week("2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25")


def check(today, summaries, missing=(), ratios=(0.6, 3.0)):
    return check_volume(today["volume"], list(missing), summaries, RUN, *ratios)


def failed(today, summaries, **kwargs):
    return check(today, summaries, **kwargs)["failed"]


# ---------------------------------------------------------------- the level days

def test_a_level_day_is_blessed_or_overridden_for_volume_alone():
    assert sets_the_level(summary("2026-11-25")) is True
    assert sets_the_level(summary("2026-11-25", overridden=True, reasons=[VOLUME])) is True
    assert sets_the_level(summary("2026-11-25", overridden=True,
                                  reasons=[ANOMALIES, VOLUME])) is False
    assert sets_the_level(summary("2026-11-25", overridden=True, reasons=[ANOMALIES])) is False
    assert sets_the_level(summary("2026-11-25", blessed=False, reasons=[VOLUME])) is False
    older = summary("2026-11-25")
    del older["volume"]           # written before the volume was recorded
    assert sets_the_level(older) is False


def test_an_override_for_volume_starts_a_new_level():
    days = dict(FOUR, **week("2026-11-21", blessed=False, reasons=[VOLUME]))
    assert level_days(days) == (sorted(FOUR), None)
    days["2026-11-23"] = summary("2026-11-23", overridden=True, reasons=[VOLUME])
    assert level_days(days) == (["2026-11-23", "2026-11-24", "2026-11-25"], "2026-11-23")
    days["2026-11-25"] = summary("2026-11-25", overridden=True, reasons=[VOLUME])
    assert level_days(days) == (["2026-11-25"], "2026-11-25")


# ---------------------------------------------------------------- figures

def test_figures_are_valid_rows_per_source_and_per_hour_of_each_partition():
    assert SEOUL == {"2026-11-25": 9.0, "2026-11-26": 15.0}
    assert day_figures(summary("2026-11-26")["volume"], RUN) == {
        (SOURCE, "client"): 900.0, (SOURCE, "server"): 100.0,
        (PARTITION, -1): 300 / 9, (PARTITION, 0): 700 / 15}
    # Each day's partitions keyed by their offset from its own date.
    assert day_figures(summary("2026-11-20")["volume"], dt.date(2026, 11, 20)) == {
        (SOURCE, "client"): 900.0, (SOURCE, "server"): 100.0,
        (PARTITION, -1): 300 / 9, (PARTITION, 0): 700 / 15}
    # A missing partition gives no figure, nor do the sources (they lack its rows).
    assert day_figures(summary("2026-11-26")["volume"], RUN, ["2026-11-25"]) == {
        (PARTITION, 0): 700 / 15}


# ---------------------------------------------------------------- the check

def test_fewer_than_three_level_days_pass_and_say_so():
    two = week("2026-11-24", "2026-11-25")
    result = check(summary("2026-11-26", scale=0.1), dict(two, **week(
        "2026-11-23", overridden=True, reasons=[ANOMALIES])))
    assert result["checked"] is False and result["failed"] == []
    assert result["level_days"] == ["2026-11-24", "2026-11-25"]
    assert result["note"] == ("only 2 day(s) in the 7 days before set the volume level "
                              "(blessed, or overridden for volume alone); the check needs 3 "
                              "and passes")
    assert [f["median"] for f in result["figures"]] == [None] * 4
    assert [f["value"] for f in result["figures"]] == [90.0, 10.0, 30 / 9, 70 / 15]
    assert check(summary("2026-11-26", scale=0.1), dict(two, **week("2026-11-19")))[
        "failed"] == ["client", "server", "2026-11-25", "2026-11-26"]


def test_a_day_is_refused_below_the_min_ratio_and_above_the_max_ratio():
    assert failed(summary("2026-11-26"), FOUR) == []
    assert failed(summary("2026-11-26", scale=0.75), FOUR) == []
    assert failed(summary("2026-11-26", scale=0.4), FOUR) == [
        "client", "server", "2026-11-25", "2026-11-26"]
    assert failed(summary("2026-11-26", scale=3.2), FOUR) == [
        "client", "server", "2026-11-25", "2026-11-26"]
    # The bounds themselves pass.
    assert failed(summary("2026-11-26", scale=0.6), FOUR) == []
    assert failed(summary("2026-11-26", scale=3.0), FOUR) == []
    assert failed(summary("2026-11-26", scale=0.5), FOUR, ratios=(0.5, 3.0)) == []
    assert failed(summary("2026-11-26", scale=2.0), FOUR, ratios=(0.6, 1.9)) == [
        "client", "server", "2026-11-25", "2026-11-26"]


def test_the_median_not_the_mean_sets_the_level():
    days = dict(FOUR, **week("2026-11-21", scale=0.1), **week("2026-11-20", scale=0.1))
    result = check(summary("2026-11-26"), days)
    assert result["failed"] == []
    assert [f["median"] for f in result["figures"]] == [900, 100, 300 / 9, 700 / 15]
    # Days 8 days back and more, and the run date's own, are not read by validate_day; a
    # day in `summaries` that is not a level day counts for nothing.
    days = dict(FOUR, **week("2026-11-21", scale=5.0, blessed=False, reasons=[VOLUME]))
    assert check(summary("2026-11-26"), days)["level_days"] == sorted(FOUR)


def test_a_short_partition_is_refused_by_its_rows_per_hour_and_named():
    today = summary("2026-11-26", second=233)
    result = check(today, FOUR)
    assert result["failed"] == ["client", "server", "2026-11-26"]
    assert volume_descriptions(result) == [
        "volume: 480 valid client rows, 0.53 of the median 900 of 4 day(s) "
        "(2026-11-22 to 2026-11-25); allowed 0.6 to 3 of it",
        "volume: 53 valid server rows, 0.53 of the median 100 of 4 day(s) "
        "(2026-11-22 to 2026-11-25); allowed 0.6 to 3 of it",
        "volume: UTC partition 2026-11-26 (15 h of the span) holds 15.5 valid rows per hour, "
        "0.33 of the median 46.7 of 4 day(s) (2026-11-22 to 2026-11-25); allowed 0.6 to 3 "
        "of it"]
    assert result["figures"][2]["passed"] is True          # the first partition is whole
    partition = result["figures"][3]
    assert partition == {"scope": PARTITION, "name": "2026-11-26", "span_hours": 15.0,
                         "value": 233 / 15, "level_days": 4, "median": 700 / 15,
                         "ratio": 233 / 700, "passed": False}


def test_a_daylight_saving_change_is_compared_per_hour():
    """Berlin: before 2026-10-25 the day starts at 22:00 UTC (2 hours of the day before),
    on it the day has 25 hours, after it the day starts at 23:00 UTC (1 hour). At an even
    rate per hour the first partition's rows halve, and nothing is refused."""
    def berlin(day, rate=10):
        hours = partition_hours(day_span(day, "Europe/Berlin"))
        first, second = sorted(hours)
        rows = {d: round(rate * hours[d]) for d in hours}
        s = summary(day.isoformat())
        s["volume"] = volume(sum(rows.values()), 0, rows[first], rows[second], day, hours)
        return s

    days = [dt.date(2026, 10, 19) + dt.timedelta(days=n) for n in range(8)]
    assert [sum(partition_hours(day_span(d, "Europe/Berlin")).values()) for d in days] == [
        24] * 6 + [25, 24]
    assert partition_hours(day_span(days[-1], "Europe/Berlin")) == {
        "2026-10-25": 1.0, "2026-10-26": 23.0}
    before = {d.isoformat(): berlin(d) for d in days[:6]}
    assert check_volume(berlin(days[6])["volume"], [], before, days[6], 0.6, 3.0)[
        "failed"] == []
    result = check_volume(berlin(days[7])["volume"], [],
                          dict(before, **{days[6].isoformat(): berlin(days[6])}), days[7],
                          0.6, 3.0)
    assert result["failed"] == []
    assert [f["ratio"] for f in result["figures"] if f["scope"] == PARTITION] == [1.0, 1.0]
    # The same day at half the rate in its second partition is refused.
    short = berlin(days[7])
    short["volume"]["by_partition"]["2026-10-26"]["rows_valid"] = 115
    assert check_volume(short["volume"], [], before, days[7], 0.6, 3.0)["failed"] == [
        "2026-10-26"]


def test_missing_partitions_compare_the_present_ones_and_are_named():
    today = summary("2026-11-26")
    today["volume"]["by_partition"]["2026-11-25"].update(rows_read=0, rows_valid=0)
    result = check(today, FOUR, missing=["2026-11-25"])
    assert result["failed"] == []
    assert [f["name"] for f in result["figures"]] == ["2026-11-26"]
    assert result["missing_partitions"] == ["2026-11-25"]
    assert result["note"] == ("missing partition(s) 2026-11-25 (read with "
                              "--allow_missing_partitions): the sources are not compared, the "
                              "present partitions are")
    today["volume"]["by_partition"]["2026-11-26"]["rows_valid"] = 200
    assert check(today, FOUR, missing=["2026-11-25"])["failed"] == ["2026-11-26"]
    # A level day that missed a partition gives only its present partitions' figures; a
    # figure with fewer than 3 level days is not compared.
    days = dict(FOUR)
    short = days["2026-11-22"] = summary("2026-11-22", scale=0.1, second=700)
    short["missing_partitions"] = ["2026-11-21"]
    result = check(summary("2026-11-26"), days)
    assert [(f["name"], f["level_days"], f["median"]) for f in result["figures"]] == [
        ("client", 3, 900), ("server", 3, 100), ("2026-11-25", 3, 300 / 9),
        ("2026-11-26", 4, 700 / 15)]
    assert result["failed"] == []
    days["2026-11-23"] = dict(days["2026-11-23"], missing_partitions=["2026-11-22"])
    result = check(summary("2026-11-26", scale=0.1), days)
    assert [(f["name"], f["level_days"], f["median"]) for f in result["figures"]] == [
        ("client", 2, None), ("server", 2, None), ("2026-11-25", 2, None),
        ("2026-11-26", 4, 700 / 15)]
    assert result["failed"] == ["2026-11-26"]


def test_after_an_override_for_volume_one_day_at_the_new_level_is_enough():
    days = dict(FOUR)
    days["2026-11-25"] = summary("2026-11-25", scale=0.4, overridden=True, reasons=[VOLUME])
    result = check(summary("2026-11-26", scale=0.4), days)
    assert result["failed"] == [] and result["checked"] is True
    assert result["level_days"] == ["2026-11-25"]
    assert result["note"] == "the level starts at 2026-11-25, a day overridden for volume"
    assert failed(summary("2026-11-26"), days) == []          # 2.5 times the new level
    assert failed(summary("2026-11-26", scale=0.2), days) == [
        "client", "server", "2026-11-25", "2026-11-26"]
    # Without the override the new level is refused until it holds the median.
    days["2026-11-25"] = summary("2026-11-25", scale=0.4)
    assert failed(summary("2026-11-26", scale=0.4), days) == [
        "client", "server", "2026-11-25", "2026-11-26"]


def test_a_median_of_zero():
    days = {day: summary(day) for day in FOUR}
    for s in days.values():
        s["volume"]["by_source"]["server"]["rows_valid"] = 0
    today = summary("2026-11-26")
    assert failed(today, days) == ["server"]
    assert volume_descriptions(check(today, days)) == [
        "volume: 100 valid server rows, above the median 0 of 4 day(s) (2026-11-22 to "
        "2026-11-25); allowed 0.6 to 3 of it"]
    today["volume"]["by_source"]["server"]["rows_valid"] = 0
    assert failed(today, days) == []


# ---------------------------------------------------------------- the gate

def _counts():
    return {"rows_read": 1000, "out_of_span": 0, "rows_quarantined": 0,
            "quarantined_by_reason": {}, "duplicates_dropped": 0, "rows_valid": 1000,
            "input_anomalies": [], "missing_partitions": [], "new_columns": []}


def test_the_gate_refuses_for_volume_and_the_override_blesses():
    low = check(summary("2026-11-26", scale=0.4), FOUR)
    assert gate_decision(_counts(), [], 0.05, False, low) == {
        "blessed": False, "overridden": False, "reasons": [VOLUME]}
    assert gate_decision(_counts(), [], 0.05, True, low) == {
        "blessed": True, "overridden": True, "reasons": [VOLUME]}
    assert gate_decision(_counts(), [], 0.05, False, check(summary("2026-11-26"), FOUR)) == {
        "blessed": True, "overridden": False, "reasons": []}
    empty = dict(_counts(), rows_valid=0)
    assert gate_decision(empty, [], 0.05, True, low)["reasons"] == [EMPTY_DAY, VOLUME]
    anomalies = gate_anomalies(_counts(), [VOLUME], 0.05, low)
    assert [(a["feature"], a["severity"], a["environment"]) for a in anomalies] == [
        ("", "ERROR", "DATASET")] * 4
    assert [a["description"] for a in anomalies] == volume_descriptions(low)


def test_the_window_is_the_seven_days_before_the_run_date(tmp_path):
    for day in ("2026-11-18", "2026-11-19", "2026-11-22", "2026-11-25", "2026-11-26",
                "2026-11-27"):
        directory = day_files.day_dir(str(tmp_path), day)
        os.makedirs(directory)
        with open(os.path.join(directory, day_files.SUMMARY_FILE), "w") as handle:
            json.dump({"run_date": day}, handle)
    found = day_files.window_summaries(str(tmp_path), RUN, 7)
    assert found == {day: {"run_date": day} for day in ("2026-11-19", "2026-11-22",
                                                         "2026-11-25")}
