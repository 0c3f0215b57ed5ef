"""The features job end to end (tier 3), from the session's two subprocesses
(tests/helpers/features_runs.py, through the tft_subprocess_results fixture): the published outputs load with
tft.TFTransformOutput and tfdv.load_statistics, the point-in-time windows match an
independent reference written here, and transform_raw_features on the reference's raw
rows gives exactly the rows the pipeline wrote (serving parity)."""

import datetime as dt
import json
import math
import os

import pytest

from schemas import contract, features as F
from tests.helpers.features_runs import FEATURES_DAY, FEATURES_LOOKBACK, FEATURES_SALT, FEATURES_TZ
from transforms.features.gate import published_gate_files

pytestmark = pytest.mark.jobs


def _day_dir(out, entity):
    return f"{out}/features/{entity}/dt={FEATURES_DAY}"


@pytest.fixture(scope="module")
def run(tft_subprocess_results):
    assert tft_subprocess_results["job_rc"] == 0, tft_subprocess_results["job_log"][-6000:]
    from transforms.graph import index_store
    from transforms.publishing.readers import load_index
    # The version the job made: the prepared version 1 extended with the day's articles.
    ids, indexes = load_index(index_store.version_dir(tft_subprocess_results["out"], 2))
    return dict(tft_subprocess_results, extended=dict(zip(ids.to_pylist(), indexes.tolist())))


def test_the_job_extends_the_index_and_every_manifest_names_the_version(run):
    from transforms.graph import index_store
    from transforms.publishing.readers import published_manifest
    out = run["out"]
    assert index_store.read_current(out) == 2
    version = published_manifest(index_store.version_dir(out, 2))
    expected = {"version": 2, "parent": 1, "vocab_size": max(run["extended"].values()) + 1}
    assert {k: version[k] for k in expected} == expected
    # Known articles keep their index; every article of the day has one (none is 0).
    assert {a: run["extended"][a] for a in run["index"]} == run["index"]
    today = {a for a in run["tables"][0].column("article_id").to_pylist() if a}
    assert today <= set(run["extended"]) and 0 not in run["extended"].values()
    for folder in [f"{out}/features/{F.DAILY_DIR}/dt={FEATURES_DAY}"] + \
            [_day_dir(out, entity) for entity in F.ENTITIES]:
        assert published_manifest(folder)["article_index"] == expected, folder


def test_job_exits_0_and_publishes_each_entity(run):
    from transforms.publishing.files import SUCCESS
    from transforms.publishing.readers import published_manifest
    for entity in F.ENTITIES:
        day_dir = _day_dir(run["out"], entity)
        assert os.path.exists(f"{day_dir}/{SUCCESS}")
        manifest = published_manifest(day_dir)
        assert sorted(manifest["file_sets"]) == ["eval", "stats", "train", "transform"]
        # The gate's files are the run's, named for it and committed with the day.
        names = [F.HTML_FILE, F.SUMMARY_FILE] + list(F.STATS_FILES.values()) + \
            list(F.ANOMALIES_FILES.values())
        assert sorted(f["name"] for f in manifest["file_sets"]["stats"]["files"]) == sorted(
            F.gate_file_name(name, manifest["run_id"]) for name in names)
        gate_files = published_gate_files(day_dir)
        assert sorted(gate_files) == sorted(names)
        # Each artifact loads with the loader its users call.
        import tensorflow_data_validation as tfdv
        for split in F.SPLITS:
            loaded = tfdv.load_anomalies_text(gate_files[F.ANOMALIES_FILES[split]])
            assert not loaded.anomaly_info, (entity, split)
            stats = tfdv.load_statistics(gate_files[F.STATS_FILES[split]])
            assert stats.datasets[0].num_examples == manifest["file_sets"][split]["rows"]
        assert manifest["feature_gate"] == {"blessed": True, "overridden": False, "reasons": []}
        with open(f"{run['out']}/features/{entity}/LATEST") as handle:
            assert handle.read() == f"{FEATURES_DAY}\n"


def test_lookback_days_used_and_skipped(run):
    from transforms.publishing.readers import published_manifest
    expected = {"used": ["2026-11-25", "2026-11-23"],
                "skipped": [{"day": "2026-11-24", "reason": "not blessed"}]}
    for entity in F.ENTITIES:
        assert published_manifest(_day_dir(run["out"], entity))["lookback"] == expected
        with open(published_gate_files(_day_dir(run["out"], entity))[F.SUMMARY_FILE]) as handle:
            assert json.load(handle)["lookback"] == expected


def test_refused_day_exits_1_after_writing_its_summary(run):
    assert run["refused_rc"] == 1, run["refused_log"][-6000:]
    assert "features/articles of 2026-11-26 refused" in run["refused_log"]
    day_dir = _day_dir(run["refused_out"], F.ARTICLES)
    # The run's summary and page, named for it, never committed; the message names them.
    summaries = [n for n in os.listdir(day_dir) if n.startswith("summary-")]
    assert len(summaries) == 1
    run_id = summaries[0][len("summary-"):-len(".json")]
    assert f"see {day_dir}/{summaries[0]} and the page beside it" in run["refused_log"]
    assert os.path.exists(f"{day_dir}/{F.gate_file_name(F.HTML_FILE, run_id)}")
    with open(f"{day_dir}/{summaries[0]}") as handle:
        summary = json.load(handle)
    assert (summary["blessed"], summary["overridden"], summary["reasons"]) == \
        (False, False, ["anomalies"])
    assert {(a["split"], a["feature"]) for a in summary["anomalies"]} == \
        {("train", "ctr"), ("eval", "ctr")}
    assert not os.path.exists(f"{day_dir}/_SUCCESS")
    assert not os.path.exists(f"{day_dir}/manifest.json")
    # The refusal wrote the day's page before the job failed.
    report_path = os.path.join(run["refused_out"], "report", f"dt={FEATURES_DAY}",
                               "report.json")
    with open(report_path) as handle:
        report = json.load(handle)
    assert report["verdict"]["label"] == "refused"
    assert "features/articles: anomalies" in report["verdict"]["reasons"]
    assert report["refusals"][0]["stage"] == "features/articles"


def test_statistics_load_and_count_the_written_rows(run):
    import tensorflow_data_validation as tfdv
    from transforms.publishing.readers import published_manifest
    for entity in F.ENTITIES:
        day_dir = _day_dir(run["out"], entity)
        manifest = published_manifest(day_dir)
        for split, name in F.STATS_FILES.items():
            stats = tfdv.load_statistics(published_gate_files(day_dir)[name])
            assert stats.datasets[0].num_examples == manifest["file_sets"][split]["rows"]
            assert {f.path.step[0] for f in stats.datasets[0].features} == \
                set(F.TRANSFORMED_FEATURES[entity])


# ---------------------------------------------------------------------------------------------
# An independent reference of the raw rows (plain Python over the generated events)


def _events(table):
    import pyarrow as pa
    rows = table.to_pylist()
    micros = table.column("event_timestamp").cast(pa.int64()).to_pylist()
    for row, ts in zip(rows, micros):
        row["ts"] = ts
        # The row checks canonicalise legacy names (item_click -> article_view).
        row["event_name"] = contract.LEGACY_ALIASES.get(row["event_name"], row["event_name"])
    return rows


def _bounds(back):
    from transforms.common.span import day_span
    span = day_span(dt.date.fromisoformat(FEATURES_DAY) - dt.timedelta(days=back), FEATURES_TZ)
    return span.end_us - 3 * 3600 * 1_000_000, span.end_us


def _window_rows(run, split):
    """Events in the split's window: day 3's rows from its boundary (train only), day 1
    whole, today before its boundary (train) or whole (eval); day 2 is not blessed."""
    chosen = []
    for back, table in run["tables"].items():
        boundary, _ = _bounds(back)
        for row in _events(table):
            if back == 0:
                keep = split == "eval" or row["ts"] < boundary
            elif back < FEATURES_LOOKBACK:
                keep = True
            else:
                keep = split == "train" and row["ts"] >= boundary
            if keep:
                chosen.append(row)
    return chosen


def reference_articles(run, split):
    boundary, end = _bounds(0)
    window_end = boundary if split == "train" else end
    found = {}
    for row in _window_rows(run, split):
        article = row["article_id"]
        if article is None:
            continue
        a = found.setdefault(article, {"counts": {n: 0 for n in F.ARTICLE_COUNTS}, "sold": 0,
                                       "created": None, "attrs": {}})
        for name, event in F.ARTICLE_COUNTS.items():
            a["counts"][name] += row["event_name"] == event
        a["sold"] = max(a["sold"], int(row["event_name"] == contract.ARTICLE_SOLD))
        if row["event_name"] == contract.ARTICLE_CREATED:
            a["created"] = row["ts"] if a["created"] is None else min(a["created"], row["ts"])
        for name in F.ATTRIBUTES:
            if row[name] is not None:
                key = (row["ts"], row["event_id"])
                if name not in a["attrs"] or key > a["attrs"][name][0]:
                    a["attrs"][name] = (key, row[name])
    rows = {}
    for article, a in found.items():
        # 0 only for an article of the lookback days alone (their runs here did not
        # extend the index, as the prepared days were published by hand).
        row = {F.ARTICLE_ID: article, F.ARTICLE_INDEX: run["extended"].get(article, 0),
               F.SOLD: a["sold"],
               F.AGE_HOURS: None if a["created"] is None else (window_end - a["created"]) / 3.6e9}
        row.update(a["counts"])
        for name in F.ATTRIBUTES:
            row[name] = a["attrs"][name][1] if name in a["attrs"] else None
        rows[article] = row
    return rows


def reference_users(run, split):
    from transforms.common.privacy import pseudonym
    found = {}
    for row in _window_rows(run, split):
        if row["event_name"] not in contract.CLIENT_EVENTS or row["user_id"] is None:
            continue
        user = pseudonym(row["user_id"], FEATURES_SALT)
        u = found.setdefault(user, {"event": {}, "region_id": {}, "platform": {},
                                    "category_id": {}})
        for kind, column in (("event", "event_name"), ("region_id", "region_id"),
                             ("platform", "platform"), ("category_id", "category_id")):
            if row[column] is not None:
                u[kind][row[column]] = u[kind].get(row[column], 0) + 1

    def ranked(counts):
        return [key for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    rows = {}
    for user, u in found.items():
        row = {F.USER_ID: user,
               F.REGION_ID: (ranked(u["region_id"]) or [None])[0],
               F.PLATFORM: (ranked(u["platform"]) or [None])[0],
               F.TOP_CATEGORIES: ranked(u["category_id"])[:F.TOP_CATEGORY_COUNT]}
        row.update({name: u["event"].get(event, 0) for name, event in F.USER_COUNTS.items()})
        rows[user] = row
    return rows


def _example(row, entity):
    import tensorflow as tf
    features = {}
    for name, kind, _ in F.RAW_FEATURES[entity]:
        value = row[name]
        values = [] if value is None else (value if isinstance(value, list) else [value])
        if not values:
            continue
        if kind == "int":
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        elif kind == "float":
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _equal(found, expected):
    if isinstance(expected, float):
        return math.isclose(found, expected, rel_tol=1e-6, abs_tol=1e-6)
    return found == expected


@pytest.mark.parametrize("entity", F.ENTITIES)
@pytest.mark.parametrize("split", F.SPLITS)
def test_serving_parity_with_the_reference_rows(run, entity, split):
    """The written rows are exactly transform_raw_features of the reference's raw rows,
    parsed with the published raw_feature_spec() (what serving does), row for row."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from transforms.features.stage import transform_output_dir
    from transforms.publishing.readers import read_file_set
    day_dir = _day_dir(run["out"], entity)
    output = tft.TFTransformOutput(transform_output_dir(day_dir))
    assert output.raw_feature_spec() == F.raw_feature_spec(entity)
    assert sorted(output.transformed_feature_spec()) == sorted(F.TRANSFORMED_FEATURES[entity])
    reference = (reference_articles if entity == F.ARTICLES else reference_users)(run, split)
    key = F.ARTICLE_ID if entity == F.ARTICLES else F.USER_ID
    written = {row[key][0].decode(): row for row in read_file_set(day_dir, split)}
    assert sorted(written) == sorted(reference)
    ids = sorted(reference)
    parsed = tf.io.parse_example([_example(reference[i], entity) for i in ids],
                                 output.raw_feature_spec())
    transformed = output.transform_raw_features(parsed, drop_unused_features=True)
    mismatches = []
    for name, (kind, width) in F.TRANSFORMED_FEATURES[entity].items():
        values = transformed[name].numpy().reshape(len(ids), width).tolist()
        for i, article in enumerate(ids):
            expected = values[i]
            if kind == "string":
                expected = [v.decode() if isinstance(v, bytes) else v for v in expected]
            found = written[article][name]
            if kind == "string":
                found = [v.decode() for v in found]
            if len(found) != width or not all(_equal(a, b) for a, b in zip(found, expected)):
                mismatches.append((name, article, found, expected))
    assert mismatches == []
    if entity == F.ARTICLES:
        today = {a for a in run["tables"][0].column("article_id").to_pylist() if a}
        assert [written[i][F.ARTICLE_INDEX][0] for i in ids] == \
            [run["extended"].get(i, 0) for i in ids]
        assert all(written[i][F.ARTICLE_INDEX][0] > 0 for i in ids if i in today)


def test_daily_partials_published_for_the_next_day(run):
    from transforms.publishing.readers import published_manifest
    manifest = published_manifest(f"{run['out']}/features/_daily/dt={FEATURES_DAY}")
    assert sorted(manifest["file_sets"]) == ["articles", "users"]
    boundary, end = _bounds(0)
    assert manifest["window"]["boundary_us"] == boundary
    assert manifest["window"]["end_us"] == end
    today = _events(run["tables"][0])
    expected = {(r["article_id"], int(r["ts"] >= boundary)) for r in today if r["article_id"]}
    assert manifest["file_sets"]["articles"]["rows"] == len(expected)
