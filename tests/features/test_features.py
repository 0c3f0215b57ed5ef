"""Plain functions of the features (tier 1): windows, partial aggregates and their merge,
raw rows, the article index join, the names module and the reviewed schema."""

import numpy as np
import pyarrow as pa
import pytest

from schemas import contract, features as F
from transforms.common.span import split_boundary_us
from transforms.features import partials as T, rows as R, tfxio_rows

pytestmark = pytest.mark.functions

US = 1_000_000


def events(rows):
    """Contract-shaped events from (event_id, ts seconds, name, user, article, region,
    category, price, platform) tuples."""
    columns = list(zip(*rows))
    return pa.table({
        "event_id": pa.array(columns[0], pa.string()),
        "event_timestamp": pa.array([t * US for t in columns[1]], pa.timestamp("us", tz="UTC")),
        "event_name": pa.array(columns[2], pa.string()),
        "user_id": pa.array(columns[3], pa.string()),
        "article_id": pa.array(columns[4], pa.string()),
        "region_id": pa.array(columns[5], pa.string()),
        "category_id": pa.array(columns[6], pa.string()),
        "price": pa.array(columns[7], pa.int64()),
        "platform": pa.array(columns[8], pa.string()),
    })


DAY = events([
    ("e1", 10, "impression", "u1", "a1", "r1", "c1", 100, "ios"),
    ("e2", 20, "article_view", "u1", "a1", "r1", "c1", 150, "ios"),
    ("e4", 30, "article_like", "u2", "a1", None, "c2", None, "web"),
    ("e3", 30, "chat_start", "u2", "a1", "r2", None, 120, "web"),      # same ts: e4 > e3
    ("e5", 40, "article_created", "s1", "a2", "r9", "c9", 999, "server"),
    ("e6", 50, "article_sold", "s1", "a2", "r9", "c9", 990, "server"),
    ("e7", 60, "search", "u1", None, "r1", "c3", None, "ios"),
    ("e8", 70, "article_created", "s1", "a2", "r9", "c9", 980, "server"),
    ("e9", 80, "impression", "u2", "a2", "r9", "c9", 970, "web"),
])


def test_window_membership_of_each_part():
    assert [R.window_membership(0, p, 3) for p in (0, 1)] == [(True, True), (False, True)]
    assert [R.window_membership(2, p, 3) for p in (0, 1)] == [(True, True), (True, True)]
    assert [R.window_membership(3, p, 3) for p in (0, 1)] == [(False, False), (True, False)]
    assert R.window_membership(4, 1, 3) == (False, False)
    assert [R.window_membership(0, p, 0) for p in (0, 1)] == [(True, True), (False, True)]


def test_split_boundary():
    assert split_boundary_us(100 * 3600 * US, "time", 3.0) == 97 * 3600 * US
    assert split_boundary_us(100 * 3600 * US, "user_hash", 3.0) == 100 * 3600 * US
    with pytest.raises(ValueError, match="--eval_split"):
        split_boundary_us(0, "random", 3.0)


def test_article_partials_per_part():
    reduced = T.reduce_articles(T.article_event_rows(DAY, 45 * US)).to_pylist()
    assert [(r["article_id"], r[F.PART]) for r in reduced] == [("a1", 0), ("a2", 0), ("a2", 1)]
    a1, a2_before, a2_from = reduced
    assert (a1["views"], a1["likes"], a1["chats"], a1["impressions"], a1["sold"]) == \
        (1, 1, 1, 1, 0)
    # price: last by (ts, event_id) among rows with one: e3 (e4 has none); category: e4.
    assert (a1["price"], a1["category_id"], a1["region_id"]) == (120, "c2", "r2")
    assert (a1["category_id_event"], a1["price_event"]) == ("e4", "e3")
    assert a1["created_us"] is None
    assert (a2_before["created_us"], a2_before["sold"], a2_before["price"]) == (40 * US, 0, 999)
    assert (a2_from["created_us"], a2_from["sold"], a2_from["price"], a2_from["impressions"]) \
        == (70 * US, 1, 970, 1)


def test_partials_merge_like_the_whole():
    """Reducing two halves' partials gives the partials of the whole day."""
    rows = T.article_event_rows(DAY, 45 * US)
    halves = [T.reduce_articles(rows.slice(0, 4)), T.reduce_articles(rows.slice(4))]
    assert T.reduce_articles(pa.concat_tables(halves)).to_pylist() == \
        T.reduce_articles(rows).to_pylist()
    users = T.user_event_rows(DAY, DAY.column("user_id"), 45 * US)
    split = [T.user_event_rows(DAY.slice(0, 5), DAY.column("user_id").slice(0, 5), 45 * US),
             T.user_event_rows(DAY.slice(5), DAY.column("user_id").slice(5), 45 * US)]
    assert T.reduce_users(pa.concat_tables(split)).to_pylist() == users.to_pylist()


def test_article_rows_with_index_and_age():
    merged = T.reduce_articles(T.article_event_rows(DAY, 45 * US).drop([F.PART]),
                               ["article_id"])
    rows = R.article_rows(merged, 100 * US, pa.array(["a2", "zz"]), np.array([7, 8])).to_pylist()
    assert [r[F.ARTICLE_INDEX] for r in rows] == [0, 7]
    assert rows[0][F.AGE_HOURS] is None
    assert rows[1][F.AGE_HOURS] == pytest.approx(60 / 3600, rel=1e-6)   # earliest created: 40 s
    assert (rows[1][F.SOLD], rows[1][F.PRICE], rows[1][F.IMPRESSIONS]) == (1, 970, 1)


def test_user_rows_count_client_events_only():
    users = T.user_event_rows(DAY, DAY.column("user_id"), 45 * US)
    rows = R.user_rows(T.reduce_users(users.drop([F.PART]), with_part=False)).to_pylist()
    assert [r[F.USER_ID] for r in rows] == ["u1", "u2"]     # s1 has server events only
    u1, u2 = rows
    assert (u1["count_impression"], u1["count_article_view"], u1["count_search"]) == (1, 1, 1)
    assert (u1[F.REGION_ID], u1[F.PLATFORM], u1[F.TOP_CATEGORIES]) == ("r1", "ios", ["c1", "c3"])
    # u2: regions r2, r9 once each -> r2 (id order); categories c2, c9 once each.
    assert (u2[F.REGION_ID], u2[F.TOP_CATEGORIES]) == ("r2", ["c2", "c9"])
    assert (u2["count_article_like"], u2["count_chat_start"], u2["count_impression"]) == (1, 1, 1)


def test_top_categories_keep_three_by_count_then_id():
    rows = [(f"e{i}", i, "impression", "u", f"a{i}", "r", c, 1, "ios")
            for i, c in enumerate(["c5", "c5", "c4", "c3", "c3", "c2", "c1", "c1"])]
    table = events(rows)
    users = T.user_event_rows(table, table.column("user_id"), 10**9)
    row = R.user_rows(T.reduce_users(users.drop([F.PART]), with_part=False)).to_pylist()[0]
    assert row[F.TOP_CATEGORIES] == ["c1", "c3", "c5"]


def test_merge_shard_windows():
    """Today's part FROM is eval only; lookback day L's part FROM is train only."""
    today = T.article_event_rows(DAY, 45 * US)
    old = T.reduce_articles(T.article_event_rows(events([
        ("o1", 5, "article_view", "u9", "a1", "r1", "c1", 1, "ios"),
        ("o2", 6, "impression", "u9", "a1", "r1", "c1", 1, "ios")]), 6 * US))
    shard = R.merge_shard({F.ARTICLES: [today], F.USERS: []},
                          {F.ARTICLES: [(2, old)]}, [], 2, 45 * US, 100 * US)
    train = {r[F.ARTICLE_ID]: r for r in shard.rows[(F.ARTICLES, "train")].to_pylist()}
    evaluate = {r[F.ARTICLE_ID]: r for r in shard.rows[(F.ARTICLES, "eval")].to_pylist()}
    assert (train["a1"][F.VIEWS], train["a1"][F.IMPRESSIONS]) == (1, 2)   # o2 only, + e1
    assert (evaluate["a1"][F.VIEWS], evaluate["a1"][F.IMPRESSIONS]) == (1, 1)
    assert sorted(train) == ["a1", "a2"] and sorted(evaluate) == ["a1", "a2"]
    assert train["a2"][F.AGE_HOURS] == pytest.approx(5 / 3600, rel=1e-6)
    assert evaluate["a2"][F.AGE_HOURS] == pytest.approx(60 / 3600, rel=1e-6)


def test_tfxio_batch_has_the_adapters_schema():
    rows = R.user_rows(T.reduce_users(T.user_event_rows(DAY, DAY.column("user_id"), 0).drop(
        [F.PART]), with_part=False))
    batch = tfxio_rows.tfxio_batch(rows, F.USERS)
    assert batch.schema == tfxio_rows.raw_tfxio(F.USERS).ArrowSchema()
    assert batch.column(batch.schema.get_field_index(F.TOP_CATEGORIES)).to_pylist() == \
        [[b"c1", b"c3"], [b"c2", b"c9"]]


def test_names_and_reviewed_schema_agree():
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    with open(F.reviewed_schema_path()) as handle:
        schema = text_format.Parse(handle.read(), schema_pb2.Schema())
    assert list(schema.default_environment) == ["ARTICLES", "USERS"]
    for entity, environment in F.ENVIRONMENTS.items():
        names = {f.name for f in schema.feature if environment not in f.not_in_environment}
        assert names == set(F.TRANSFORMED_FEATURES[entity])
    assert set(F.USER_COUNTS.values()) == set(contract.CLIENT_EVENTS)
    assert F.AGE_MISSING_BUCKET == len(F.AGE_BOUNDARIES_HOURS) + 1


def test_lookback_plan_lists_missing_days(tmp_path):
    from transforms.features.lookback import lookback_plan
    plan = lookback_plan(str(tmp_path), "2026-11-26", 2)
    assert plan == {"files": [], "used": [], "rows": 0,
                    "skipped": [{"day": "2026-11-25", "reason": "not validated"},
                                {"day": "2026-11-24", "reason": "not validated"}]}


def test_lookback_plan_skips_overridden_unblessed_and_unpublished_days(tmp_path):
    """A day is used only when blessed without an override (like the drift baseline and
    the backfill) and its partials are published; each other day is listed with why."""
    import json
    import pyarrow as pa
    from transforms.features.lookback import lookback_plan
    from transforms.publishing.protocol import publish_day
    from transforms.publishing.writers import write_piece
    out = str(tmp_path)
    days = {"2026-11-25": (True, False, True), "2026-11-24": (True, True, True),
            "2026-11-23": (False, False, True), "2026-11-22": (True, False, False)}
    for n, (day, (blessed, overridden, partials)) in enumerate(sorted(days.items())):
        (tmp_path / "validation" / f"dt={day}").mkdir(parents=True)
        (tmp_path / "validation" / f"dt={day}" / "summary.json").write_text(json.dumps(
            {"run_date": day, "blessed": blessed, "overridden": overridden}))
        if partials:
            folder = f"{out}/features/_daily/dt={day}"
            run_id = f"20261127T00000{n}Z-0000000{n}"
            records = [r for entity in F.DAILY_FILE_SETS for r in write_piece(
                folder, run_id, "parquet", entity, 0, pa.table({"k": [1, 2, 3]}), 1 << 20)]
            publish_day(folder, run_id, records, {}, F.DAILY_FILE_SETS)
    plan = lookback_plan(out, "2026-11-26", 4)
    assert plan["used"] == ["2026-11-25"] and plan["rows"] == 3 * len(F.DAILY_FILE_SETS)
    assert [(f["entity"], f["days_back"]) for f in plan["files"]] == \
        [(entity, 1) for entity in F.DAILY_FILE_SETS]
    assert plan["skipped"] == [{"day": "2026-11-24", "reason": "overridden"},
                               {"day": "2026-11-23", "reason": "not blessed"},
                               {"day": "2026-11-22", "reason": "no published partials"}]
