"""Benchmark: training.reader against a bare tf.data pipeline on the same files.

For each kind, the train file set of one published day (datagen.events --rows 1000000,
seed 11, through beam_jobs.training_examples; both made under --work when missing) is
read to the end, parsed and batched, by

  bare       tf.data.TFRecordDataset(files, compression_type="GZIP").batch(b)
             .map(tf.io.parse_example | tf.io.parse_sequence_example), the manifest's
             spec (feature_spec_to_tf); b records a batch (skipgram: batch_pairs /
             pairs_per_record records, so a batch holds about as many pairs);
  reader     training.reader.open_days(...).dataset(batch_size, seed=0): shuffled (files,
             a buffer of the default size, skip-gram pairs within chunks), skip-gram
             records flattened into batches of exactly batch_size pairs, prefetched;
  unshuffled the same with shuffle_buffer=0.

Examples are pairs for skipgram, records otherwise. Each pipeline is read once to warm
the page cache and count what it yields (it must be the manifest's count); then each
timing reads the day `passes` times (repeat(), enough passes for about --min_seconds of
the bare read), the three pipelines back to back, --repeats times. The table shows the
best wall-clock rate of each, and the overhead (the reader's time over the bare read's)
as the median over the repeats of each back-to-back pair's ratio, which cancels most
of a shared machine's slow swings; then the same median for process CPU seconds (all
threads), which other processes disturb less.

    .venv/bin/python benchmarks/reader_bench.py [--work bench_work/reader_1000000]
        [--kinds sequences] [--shuffle_buffer 2048]
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

RUN_DATE = "2026-11-26"
SEED = 11
ROWS = 1_000_000
SALT = os.path.join(ROOT, "tests", "data", "user_id_salt")


def ensure_day(work: str) -> str:
    """<work>/out holding the day's three kinds; generated and built when missing."""
    events, out = os.path.join(work, "events"), os.path.join(work, "out")
    if not os.path.isdir(events):
        subprocess.run([sys.executable, "-m", "datagen.events", "--rows", str(ROWS),
                        "--run_date", RUN_DATE, "--timezone", "Asia/Seoul", "--seed",
                        str(SEED), "--out_dir", events], cwd=ROOT, check=True)
    markers = [os.path.join(out, "examples", k, f"dt={RUN_DATE}", "_SUCCESS")
               for k in ("skipgram", "sequences", "ranking")]
    if not all(os.path.exists(m) for m in markers):
        subprocess.run([sys.executable, "-m", "beam_jobs.training_examples",
                        "--runner=FnApiRunner", f"--events={events}", f"--run_date={RUN_DATE}",
                        "--timezone=Asia/Seoul", f"--output_dir={out}",
                        f"--user_id_salt_file={SALT}"], cwd=ROOT, check=True)
    return out


def bare_dataset(days, batch_records: int):
    import tensorflow as tf
    features, sequence = days.tf_feature_spec()
    records = tf.data.TFRecordDataset(list(days.files), compression_type="GZIP")
    if days.kind == "skipgram":
        return records.batch(batch_records).map(lambda s: tf.io.parse_example(s, features))
    return records.batch(batch_records).map(
        lambda s: tf.io.parse_sequence_example(s, context_features=features,
                                               sequence_features=sequence))


def count_bare(dataset, kind: str) -> int:
    n = 0
    for batch in dataset:
        n += int(batch["target"].values.shape[0]) if kind == "skipgram" else \
            int(batch[2]["article"].shape[0])
    return n


def count_reader(dataset, kind: str) -> int:
    n = 0
    for batch in dataset:
        n += int(batch["target"].shape[0]) if kind == "skipgram" else \
            int(batch["lengths"]["article"].shape[0])
    return n


def timed(make, count, kind, passes=1):
    """(examples read, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    dataset = make()
    n = count(dataset.repeat(passes) if passes > 1 else dataset, kind)
    return n, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(ROOT, "bench_work", "reader_1000000"),
                        help="Folder of the generated day and the job's output.")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="Records a batch for sequences and ranking.")
    parser.add_argument("--batch_pairs", type=int, default=4096,
                        help="Pairs a batch for skipgram.")
    parser.add_argument("--kinds", default="skipgram,sequences,ranking",
                        help="Comma-separated kinds to measure.")
    parser.add_argument("--shuffle_buffer", type=int, default=None,
                        help="The reader's shuffle_buffer (default: the reader's default).")
    parser.add_argument("--repeats", type=int, default=9, help="Timings of each pipeline.")
    parser.add_argument("--min_seconds", type=float, default=1.0,
                        help="Each timing reads the day this long or more (bare read).")
    args = parser.parse_args(argv)
    out = ensure_day(args.work)
    from training import reader
    rows = []
    shuffle = {} if args.shuffle_buffer is None else {"shuffle_buffer": args.shuffle_buffer}
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        days = reader.open_days(out, kind, "train")
        if kind == "skipgram":
            batch = args.batch_pairs
            batch_records = max(1, math.ceil(batch / days.pairs_per_record))
        else:
            batch = batch_records = args.batch_size
        pipelines = {
            "bare": (lambda: bare_dataset(days, batch_records), count_bare),
            "reader": (lambda: days.dataset(batch_size=batch, seed=0, **shuffle),
                       count_reader),
            "unshuffled": (lambda: days.dataset(batch_size=batch, shuffle_buffer=0),
                           count_reader),
        }
        bare_seconds = math.inf
        for name, (make, count) in pipelines.items():     # warm-up: page cache, tracing
            n, seconds, _ = timed(make, count, kind)
            if n != days.examples:
                raise AssertionError(f"{kind} {name}: read {n} examples, manifest says "
                                     f"{days.examples}")
            bare_seconds = min(bare_seconds, seconds)
        passes = max(1, math.ceil(args.min_seconds / bare_seconds))
        wall = {name: [] for name in pipelines}
        cpu = {name: [] for name in pipelines}
        for _ in range(args.repeats):
            for name, (make, count) in pipelines.items():
                n, seconds, cpu_seconds = timed(make, count, kind, passes)
                if n != passes * days.examples:
                    raise AssertionError(f"{kind} {name}: {n} examples in {passes} passes")
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
        examples = passes * days.examples
        rate = {name: examples / min(seconds) for name, seconds in wall.items()}
        overhead = {name: median_ratio(wall[name], wall["bare"]) for name in pipelines}
        cpu_overhead = {name: median_ratio(cpu[name], cpu["bare"]) for name in pipelines}
        rows.append((kind, len(days.files), days.records, days.examples, batch, passes,
                     rate, overhead, cpu_overhead))
        print(f"{kind}: {rate} {overhead} {cpu_overhead}", file=sys.stderr, flush=True)
    print("| kind | files | records | examples | batch | passes | bare (ex/s) | "
          "reader (ex/s) | unshuffled (ex/s) | overhead: reader | unshuffled | "
          "CPU overhead: reader | unshuffled |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, files, records, examples, batch, passes, rate, over, cpu_over in rows:
        print(f"| {kind} | {files} | {records:,} | {examples:,} | {batch} | {passes} | "
              f"{rate['bare']:,.0f} | {rate['reader']:,.0f} | {rate['unshuffled']:,.0f} | "
              f"{over['reader']:+.0%} | {over['unshuffled']:+.0%} | "
              f"{cpu_over['reader']:+.0%} | {cpu_over['unshuffled']:+.0%} |")


def median_ratio(seconds, bare_seconds) -> float:
    """The median over repeats of seconds / bare seconds, minus 1."""
    return statistics.median(s / b for s, b in zip(seconds, bare_seconds)) - 1


if __name__ == "__main__":
    main()
