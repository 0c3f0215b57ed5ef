"""Worker CPU of the BigQuery read path, per row, on one core.

ReadFromBigQuery(method=DIRECT_READ) streams Avro blocks from the Storage Read API
and yields one dict per row; the job then batches the dicts into Arrow
(transforms.read.rows_to_batch). This times both halves on generated rows, no
network: fastavro decoding of an Avro stream written with the table's schema
(what the Storage API sends, timestamps as timestamp-micros), then rows_to_batch.

    python benchmarks/bigquery_read_bench.py [--rows 200000]
"""

import argparse
import datetime as dt
import io
import time

import fastavro

from datagen.events import generate_events
from transforms.read import rows_to_batch

AVRO_SCHEMA = {
    "type": "record", "name": "events", "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "event_name", "type": "string"},
        {"name": "source", "type": "string"},
        {"name": "user_id", "type": ["null", "string"]},
        {"name": "article_id", "type": ["null", "string"]},
        {"name": "region_id", "type": ["null", "string"]},
        {"name": "category_id", "type": ["null", "string"]},
        {"name": "price", "type": ["null", "long"]},
        {"name": "platform", "type": ["null", "string"]},
        {"name": "properties", "type": ["null", "string"]},
    ]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    table = generate_events(args.rows, dt.date(2026, 11, 26), seed=1).table
    rows = [r for r in table.to_pylist()
            if r["event_id"] is not None and r["event_timestamp"] is not None
            and r["event_name"] is not None and r["source"] is not None]
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(AVRO_SCHEMA), rows)
    data = buffer.getvalue()
    start = time.perf_counter()
    decoded = list(fastavro.reader(io.BytesIO(data)))
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    for lo in range(0, len(decoded), 10_000):
        rows_to_batch(decoded[lo:lo + 10_000])
    batch_s = time.perf_counter() - start
    n = len(decoded)
    print(f"rows {n:,}: Avro -> dicts {n / decode_s:,.0f} rows/s, dicts -> Arrow "
          f"{n / batch_s:,.0f} rows/s, together {n / (decode_s + batch_s):,.0f} rows/s per core")


if __name__ == "__main__":
    main()
