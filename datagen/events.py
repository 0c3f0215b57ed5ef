"""A seeded day of marketplace events, written in BigQuery's Parquet export layout.

`generate_events` builds one local day (`transforms.common.span.day_span`) of events as an
Arrow table with exactly `schemas.contract.arrow_schema()`; `write_export_layout`
writes it as `<out_dir>/dt=YYYY-MM-DD/part-NNNNN.parquet`, one folder per UTC date
of `event_timestamp`, the way a date-partitioned table is exported.

The day has structure for the graph jobs to find: articles with Zipf-like
popularity, each in one region and one category at one price; users in one
region on one platform, browsing in sessions that stay mostly inside the
user's region and one category, a user's sessions more than 30 minutes apart.

By default the catalogue has one article per 20 events, and every article draw is
popularity-weighted. With `n_articles` (`--articles N`) the catalogue has exactly
N articles and the draws are a long-catalogue mix: HEAD_SHARE of them are the
same popularity-weighted draw (the head of popular articles), the others walk
through the articles of the same region and category in a seeded shuffled
order, each walk starting at a random place, so the tail is seen about once
each before any of it is seen twice. A 2M-event day with N = 1.5M sees about
1.3M distinct articles, most of them once or twice.

It also has planted rows, each kind on rows of its own so that a test can count
them back exactly: one kind per quarantine reason (`schemas.contract.REASONS`),
client-retry duplicates, legacy event names (valid, not dirty) and rows just
outside the day's span. `GeneratedDay.planted` says how many of each.

Rows are built as numpy arrays of indices into small string vocabularies, so a
million events take a few seconds.

The drawing of the catalogue and the rows is `datagen.sessions`, the planting of
the planted rows `datagen.planting`; their public constants are imported here, so
`datagen.events.<NAME>` (PLANTED_KINDS, N_CATEGORIES, ...) names them as before.
Run it as `python -m datagen.events --help`.
"""

import argparse
import dataclasses
import datetime as dt
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The public constants of datagen.planting and datagen.sessions, named here as before.
from datagen.planting import DIRTY_KINDS, DUPLICATE_EVENT_ID, LEGACY_NAME, LEGACY_SHARE, \
    MALFORMED_FORMS, MIN_ROWS_FOR_EVERY_KIND, OUT_OF_SPAN, PLANTED_KINDS, choose, \
    dirty_counts, plant
from datagen.sessions import BAD_PROPERTIES, CLIENT_PLATFORMS, DAY_US, EPOCH, HEAD_SHARE, \
    IN_BLOCK_SHARE, MAX_EVENT_GAP_US, N_CATEGORIES, REPEAT_SHARE, SERVER_NULL_USER_SHARE, \
    SESSION_GAP_US, UNKNOWN_NAMES, client_rows, concat_rows, draw_catalogue, \
    random_event_ids, server_rows
from schemas.contract import ARTICLE_LIKE, ARTICLE_VIEW, CHAT_START, CLIENT_EVENTS, \
    COLUMN_NAMES, IMPRESSION, PARTITION_COLUMN, PLATFORMS, SEARCH, SOURCES, arrow_schema
from transforms.common.span import DaySpan, day_span, parse_run_date

BREAKAGE_FORMS = "drop_column:<column>, unknown_name:<fraction in (0, 1)> or price_x1000"
SERVER_SHARE = 0.05
CLIENT_MIX = {IMPRESSION: 0.62, ARTICLE_VIEW: 0.20, ARTICLE_LIKE: 0.06, CHAT_START: 0.03,
              SEARCH: 0.09}


@dataclasses.dataclass(frozen=True)
class GeneratedDay:
    """One generated day.

    `table` has every contract column in the contract's order, even under a
    `drop_column` breakage: that names the column in `drop_columns`, and
    `write_export_layout` leaves it out of the files. `planted` counts the rows
    of each kind in `PLANTED_KINDS`; a planted row carries one kind only.
    """

    table: pa.Table
    planted: Dict[str, int]
    span: DaySpan
    breakage: Optional[str]
    drop_columns: Tuple[str, ...]


def parse_breakage(breakage: Optional[str]) -> Tuple[str, Optional[str]]:
    """None -> ("", None); "drop_column:platform" -> ("drop_column", "platform");
    "unknown_name:0.2" -> ("unknown_name", "0.2"); "price_x1000" -> ("price_x1000", None)."""
    if breakage is None:
        return "", None
    kind, _, arg = breakage.partition(":")
    if kind == "drop_column" and arg in COLUMN_NAMES:
        return kind, arg
    if kind == "unknown_name":
        try:
            fraction = float(arg)
        except ValueError:
            fraction = -1.0
        if 0.0 < fraction < 1.0:
            return kind, arg
    if breakage == "price_x1000":
        return kind, None
    raise ValueError(f"--breakage={breakage!r} must be {BREAKAGE_FORMS}; "
                     f"the columns are {', '.join(COLUMN_NAMES)}")


def check_client_mix(mix: Dict[str, float]) -> Dict[str, float]:
    """A client event mix: every client event name once, shares >= 0, summing above 0."""
    if set(mix) != set(CLIENT_EVENTS) or any(not share >= 0 for share in mix.values()) \
            or not sum(mix.values()) > 0:
        raise ValueError(f"--client_mix={mix!r} must give a share >= 0 to each of "
                         f"{', '.join(CLIENT_EVENTS)}")
    return {name: float(mix[name]) for name in CLIENT_EVENTS}


def parse_client_mix(text: str) -> Dict[str, float]:
    """'impression:0.6,article_view:0.2,...' -> {name: share}."""
    mix = {}
    for item in text.split(","):
        name, _, share = item.strip().partition(":")
        try:
            mix[name] = float(share)
        except ValueError:
            raise ValueError(f"--client_mix: {item!r} is not <event>:<share>") from None
    return check_client_mix(mix)


def generate_events(
    n_events: int,
    run_date: dt.date,
    timezone: str = "Asia/Seoul",
    seed: int = 0,
    dirty_fraction: float = 0.03,
    out_of_span_fraction: float = 0.001,
    breakage: Optional[str] = None,
    client_mix: Optional[Dict[str, float]] = None,
    n_articles: Optional[int] = None,
) -> GeneratedDay:
    """`n_events` rows of the local day `run_date` in `timezone`, in time order (a row
    planted without a timestamp stays where its time was).

    About `dirty_fraction` of the rows are dirty: client-retry duplicates and one
    kind per quarantine reason. About `out_of_span_fraction` are clean rows moved
    a few minutes outside the span but kept in its UTC dates (none where the span
    is whole UTC days). With `dirty_fraction > 0` and 1000 rows or more, every
    dirty kind and every malformed-id and bad-properties form is there.
    Same arguments, same table; `breakage` changes only what it names.
    `client_mix` (event name -> share, default CLIENT_MIX) sets the client events' mix.
    `n_articles` (default None: one article per 20 events, at least 50, every draw
    popularity-weighted) sets the catalogue's size and turns on the long-catalogue
    draw (see the module's docstring); article ids are then in [0, n_articles).
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 1:
        raise ValueError(f"--rows={n_events!r} must be a positive integer")
    if not 0.0 <= dirty_fraction <= 0.5:
        raise ValueError(f"--dirty_fraction={dirty_fraction!r} must be in [0, 0.5]")
    if not 0.0 <= out_of_span_fraction <= 0.1:
        raise ValueError(f"--out_of_span_fraction={out_of_span_fraction!r} must be in [0, 0.1]")
    if n_articles is not None and (isinstance(n_articles, bool) or
                                   not isinstance(n_articles, int) or
                                   not 1 <= n_articles < 10 ** 9):
        raise ValueError(f"--articles={n_articles!r} must be a whole number in [1, 10^9)")
    breakage_kind, breakage_arg = parse_breakage(breakage)
    mix = check_client_mix(client_mix if client_mix is not None else CLIENT_MIX)
    span = day_span(run_date, timezone)
    catalogue_rng, row_rng, plant_rng, breakage_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4))

    counts = dirty_counts(n_events, dirty_fraction)
    n_base = n_events - counts[DUPLICATE_EVENT_ID]
    n_server = int(round(SERVER_SHARE * n_base))
    catalogue = draw_catalogue(catalogue_rng, n_events, n_articles)
    rows = concat_rows(client_rows(row_rng, catalogue, n_base - n_server, span, mix),
                       server_rows(row_rng, catalogue, n_server, span))
    rows["event_id"] = np.arange(n_base)
    event_ids = random_event_ids(row_rng, n_base)
    planted, unused, extra = plant(plant_rng, rows, catalogue, event_ids, counts,
                                   out_of_span_fraction, span)

    if breakage_kind == "unknown_name":
        k = int(round(float(breakage_arg) * n_events))
        chosen = choose(breakage_rng.permutation(len(unused)), unused, k, breakage)
        rows["name"][chosen] = catalogue["names"].index(UNKNOWN_NAMES[0])
        planted["unknown_event_name"] += k
    elif breakage_kind == "price_x1000":
        rows["price"] *= 1000

    order = np.argsort(rows["ts"], kind="stable")
    table = _to_table({key: value[order] for key, value in rows.items()}, catalogue, event_ids,
                      extra)
    drop = (breakage_arg,) if breakage_kind == "drop_column" else ()
    return GeneratedDay(table, planted, span, breakage, drop)


def write_export_layout(
    table: pa.Table,
    out_dir: str,
    null_partition: dt.date,
    rows_per_file: int = 500_000,
    drop_columns: Sequence[str] = (),
) -> List[str]:
    """Writes `table` as `<out_dir>/dt=YYYY-MM-DD/part-00000.parquet`, part-00001, ...
    by the UTC date of `event_timestamp`; rows without one go to `null_partition`.

    Rows keep their order inside a partition, at most `rows_per_file` to a file.
    Old `part-*.parquet` files in the partitions written are removed first.
    `drop_columns` are left out of the files. Returns the paths written, in order.
    """
    if rows_per_file < 1:
        raise ValueError(f"--rows_per_file={rows_per_file!r} must be a positive integer")
    timestamps = table.column(PARTITION_COLUMN)
    micros = pc.cast(timestamps, pa.int64()).fill_null(0).to_numpy()
    days = np.where(timestamps.is_null().to_numpy(),
                    (null_partition - EPOCH).days, np.floor_divide(micros, DAY_US))
    body = table.drop(list(drop_columns))
    paths = []
    for day in np.unique(days):
        partition = body.take(pa.array(np.flatnonzero(days == day)))
        folder = os.path.join(out_dir, f"dt={EPOCH + dt.timedelta(days=int(day))}")
        os.makedirs(folder, exist_ok=True)
        for name in sorted(os.listdir(folder)):
            if name.startswith("part-") and name.endswith(".parquet"):
                os.remove(os.path.join(folder, name))
        for number, start in enumerate(range(0, partition.num_rows, rows_per_file)):
            path = os.path.join(folder, f"part-{number:05d}.parquet")
            pq.write_table(partition.slice(start, rows_per_file), path)
            paths.append(path)
    return paths


def _strings(values: pa.Array, extra: List[str], index: np.ndarray) -> pa.Array:
    """values[index] as strings: -1 is null, -2, -3, ... are extra[0], extra[1], ..."""
    vocabulary = pa.concat_arrays([values, pa.array(extra, pa.string())])
    at = np.where(index <= -2, len(values) - 2 - index, index)
    return vocabulary.take(pa.array(at, mask=index == -1))


def _to_table(rows: Dict[str, np.ndarray], catalogue: dict, event_ids: pa.Array,
              extra: Dict[str, List[str]]) -> pa.Table:
    """The rows as an Arrow table with the contract's schema."""

    def strings(values, key: str) -> pa.Array:
        values = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
        return _strings(values, extra.get(key, []), rows[key])

    columns = {
        "event_id": strings(event_ids, "event_id"),
        "event_timestamp": pa.array(rows["ts"], pa.timestamp("us", tz="UTC"),
                                    mask=rows["ts_null"]),
        "event_name": strings(catalogue["names"], "name"),
        "source": strings(list(SOURCES), "source"),
        "user_id": strings(catalogue["user_ids"], "user"),
        "article_id": strings(catalogue["article_ids"], "article"),
        "region_id": strings(catalogue["region_ids"], "region"),
        "category_id": strings(catalogue["category_ids"], "category"),
        "price": pa.array(rows["price"], pa.int64(), mask=rows["price_null"]),
        "platform": strings(list(PLATFORMS), "platform"),
        "properties": strings(catalogue["properties"], "properties"),
    }
    return pa.Table.from_arrays([columns[name] for name in COLUMN_NAMES], schema=arrow_schema())


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Generates a day, writes it in the export layout, prints a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m datagen.events", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="events in the day")
    parser.add_argument("--run_date", required=True,
                        help="the local day, YYYY-MM-DD, or auto for yesterday in --timezone")
    parser.add_argument("--timezone", default="Asia/Seoul", help="IANA time zone of the day")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same events")
    parser.add_argument("--dirty_fraction", type=float, default=0.03,
                        help="share of dirty rows, in [0, 0.5]")
    parser.add_argument("--out_of_span_fraction", type=float, default=0.001,
                        help="share of rows a few minutes outside the day, in [0, 0.1]")
    parser.add_argument("--breakage", default=None, help=f"break the day: {BREAKAGE_FORMS}")
    parser.add_argument("--client_mix", default="",
                        help="client event shares, e.g. impression:0.62,article_view:0.2,"
                             "article_like:0.06,chat_start:0.03,search:0.09 (the default)")
    parser.add_argument("--articles", type=int, default=None,
                        help="catalogue size N: articles drawn from N ids with a long tail "
                             "(most seen once or twice, a head of popular ones); default: "
                             "one article per 20 events, popularity-weighted")
    parser.add_argument("--out_dir", default="sample_data/events",
                        help="folder to write dt=YYYY-MM-DD/part-NNNNN.parquet under")
    parser.add_argument("--rows_per_file", type=int, default=500_000,
                        help="most rows in one Parquet file")
    args = parser.parse_args(argv)
    day = generate_events(args.rows, parse_run_date(args.run_date, args.timezone),
                          args.timezone, args.seed, args.dirty_fraction,
                          args.out_of_span_fraction, args.breakage,
                          parse_client_mix(args.client_mix) if args.client_mix else None,
                          args.articles)
    paths = write_export_layout(day.table, args.out_dir, day.span.run_date, args.rows_per_file,
                                day.drop_columns)
    partitions = sorted({os.path.basename(os.path.dirname(path)) for path in paths})
    planted = " ".join(f"{kind}={count}" for kind, count in day.planted.items())
    print(f"wrote {day.table.num_rows} rows in {len(paths)} files under {args.out_dir} "
          f"({', '.join(partitions)}); breakage={args.breakage}; planted: {planted}")
    return paths


if __name__ == "__main__":
    main()