"""Worker CPU of the BigQuery read path, per row, on one core.

ReadFromBigQuery(method=DIRECT_READ) streams Avro blocks from the Storage Read API
and yields one dict per row; the job then batches the dicts into Arrow
(transforms.ingest.read.rows_to_batch). This times both halves on generated rows, no
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
from transforms.ingest.read import rows_to_batch

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
    beam_s = through_beam(data)
    print(f"rows {n:,}: Avro -> dicts {n / decode_s:,.0f} rows/s, dicts -> Arrow "
          f"{n / batch_s:,.0f} rows/s, together {n / (decode_s + batch_s):,.0f} rows/s per core; "
          f"as the job runs it (a dict per element, BatchElements, rows_to_batch) "
          f"{n / beam_s:,.0f} rows/s per core")


def read_avro_file(path: str):
    """The rows of one Avro file, a dict each (what DIRECT_READ yields)."""
    with open(path, "rb") as handle:
        yield from fastavro.reader(handle)


def through_beam(avro: bytes) -> float:
    """Seconds of the read path as the job runs it on one core: one element per row (as
    DIRECT_READ yields them), BatchElements, rows_to_batch; the runner's fixed cost per
    pipeline (measured on the same pipeline over no file) taken off. The rows come from
    a file, so the pipeline itself stays small."""
    import os
    import tempfile

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from transforms.ingest.read import READ_BATCH_ROWS

    def run(paths) -> float:
        start = time.perf_counter()
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            _ = (p | beam.Create(paths)
                 | "Rows" >> beam.FlatMap(read_avro_file)
                 | beam.BatchElements(min_batch_size=1024, max_batch_size=READ_BATCH_ROWS)
                 | beam.Map(rows_to_batch)
                 | beam.Map(lambda batch: batch.num_rows)
                 | beam.CombineGlobally(sum))
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.avro")
        with open(path, "wb") as handle:
            handle.write(avro)
        run([])   # warm-up: the first pipeline also pays one-time imports
        empty = min(run([]), run([]))
        return min(run([path]), run([path])) - empty


if __name__ == "__main__":
    main()
