"""What parsing `properties` costs the statistics (issue 32): stats_batch, the statistics'
feature batch, before (the raw properties text passed through) and after (its known keys
parsed, transforms.common.properties.statistics_columns), beside the row checks' own
parse of every distinct text (checks.check_rows), on batches shaped like a real day.

    .venv/bin/python benchmarks/properties_bench.py [--rows 1000000] [--unique_queries 0.05]

The generated day's properties have a few hundred distinct texts; a real day's search
queries are mostly distinct, so --unique_queries (share of rows that are searches, each
with a query of its own) sets the distinct count the parse pays for. Times are the best of
3 per step, in one process, on batches of --batch_rows rows (the read's batch size).
"""

import argparse
import datetime as dt
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from datagen.events import generate_events  # noqa: E402
from transforms.common.properties import statistics_columns  # noqa: E402
from transforms.common.span import day_span  # noqa: E402
from transforms.ingest import checks, validation  # noqa: E402

DAY = dt.date(2026, 11, 26)


def best_of(step, batches, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        times.append(time.perf_counter() - start)
    return min(times)


def old_stats_batch(valid):
    """stats_batch as it was: every contract column but the dropped ones, raw."""
    names, columns = [], []
    for name in valid.schema.names:
        if name == "user_id":
            names.append(validation.USER_BUCKET)
            columns.append(validation._as_list_column(validation.user_buckets(valid.column(name))))
        elif name not in ("event_id", "event_timestamp", "user_id"):
            names.append(name)
            columns.append(validation._as_list_column(valid.column(name)))
    return pa.RecordBatch.from_arrays(columns, names=names)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--unique_queries", type=float, default=0.05)
    parser.add_argument("--batch_rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    table = generate_events(args.rows, DAY, seed=11, dirty_fraction=0.0).table
    rng = np.random.default_rng(1)
    properties = table.column("properties").to_pylist()
    searches = np.flatnonzero(rng.random(args.rows) < args.unique_queries)
    for i in searches.tolist():
        properties[i] = json.dumps({"query": f"query {i} {rng.integers(1 << 30)}"},
                                   ensure_ascii=False)
    table = table.set_column(table.schema.get_field_index("properties"), "properties",
                             pa.array(properties, pa.string()))
    span = day_span(DAY, "Asia/Seoul")
    valid = pa.Table.from_batches(
        [checks.check_rows(b, span.start_us, span.end_us).valid
         for b in table.to_batches(args.batch_rows)])
    batches = valid.to_batches(args.batch_rows)
    distinct = len(set(valid.column("properties").to_pylist()))
    rows = {
        "row checks (check_rows, its JSON parse included)": best_of(
            lambda b: checks.check_rows(b, span.start_us, span.end_us), batches),
        "stats_batch before (raw properties)": best_of(old_stats_batch, batches),
        "stats_batch now (keys parsed)": best_of(validation.stats_batch, batches),
        "statistics_columns alone": best_of(
            lambda b: statistics_columns(b.column("properties")), batches),
    }
    print(f"{valid.num_rows:,} valid rows in {len(batches)} batches, {distinct:,} distinct "
          f"properties texts ({len(searches):,} unique queries planted)")
    print("| step | seconds |\n|---|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
