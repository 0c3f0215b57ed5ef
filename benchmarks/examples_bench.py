"""The training examples stage beside the graph job, on the same validated days.

    .venv/bin/python benchmarks/examples_bench.py [--work bench_work] [--only ratio|shards]

ratio:  the 5M default day and the long-catalogue day (2M events, catalogue 1.5M): wall
        time and peak RSS (the job's process tree) of the graph job and of the examples
        job (all three kinds, index extension included), both from the validated day
        into fresh folders, and what the examples hold. Target: examples <= 3 x graph.
shards: the 5M day's examples at --max_rows_per_shard 1M, 250k and 62.5k (user shards
        and index partitions x 1, 4, 16): peak RSS must stay flat in the shard count,
        and the content must be the same (records_digest).
Days are generated and validated once under --work (bench_work/ is gitignored), as the
graph benchmark does (benchmarks/cooccurrence_bench.py).
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from cooccurrence_bench import RUN_DATE, Day, timed  # noqa: E402

SALT = os.path.join(ROOT, "tests", "data", "user_id_salt")
KINDS = ("skipgram", "sequences", "ranking")


def run_job(py: str, module: str, day: Day, name: str, extra=()):
    out = os.path.join(day.folder, f"bench_{name}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [py, os.path.join(HERE, "run_job_with_metrics.py"), module, "--runner=FnApiRunner",
           f"--validated_events={day.validated}", f"--run_date={RUN_DATE}",
           f"--output_dir={out}"] + list(extra)
    wall, peak_mb, _ = timed(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return {"wall": wall, "peak_mb": peak_mb, "out": out}


def examples_summary(out: str) -> dict:
    from transforms.publishing.readers import published_manifest
    summary = {}
    for kind in KINDS:
        m = published_manifest(os.path.join(out, "examples", kind, f"dt={RUN_DATE}"))
        sets = m["file_sets"]
        summary[kind] = {
            "records": sum(sets[s]["rows"] for s in ("train", "eval")),
            "files": sum(len(sets[s]["files"]) for s in ("train", "eval")),
            "bytes": sum(f["size_bytes"] for s in ("train", "eval") for f in sets[s]["files"]),
            "counts": m["counts"]}
    return summary


def records_digest(out: str) -> str:
    """A digest of what every kind holds: the sorted records of sequences and ranking, and
    for skip-gram the sorted (split, target, context, negatives) of every pair (which
    pairs share a record depends on the user shards; the pairs and their negatives do
    not). Equal means the same content."""
    import hashlib
    from transforms.examples.example_proto import decode_example
    from transforms.publishing.readers import published_files
    from transforms.publishing.tfrecord import read_tfrecord_file
    parts = []
    for kind in KINDS:
        folder = os.path.join(out, "examples", kind, f"dt={RUN_DATE}")
        digest = hashlib.sha256()
        for split in ("train", "eval"):
            records = sorted(r for p in published_files(folder, split)
                             for r in read_tfrecord_file(p))
            if kind != "skipgram":
                for record in records:
                    digest.update(record)
                continue
            pairs = []
            for record in records:
                f = decode_example(record)
                target, context, negatives = f["target"][1], f["context"][1], f["negatives"][1]
                k = len(negatives) // max(1, len(target))
                pairs += [(split, target[i], context[i], tuple(negatives[i * k:(i + 1) * k]))
                          for i in range(len(target))]
            for pair in sorted(pairs):
                digest.update(repr(pair).encode())
        parts.append(f"{kind}:{digest.hexdigest()[:10]}")
    return " ".join(parts)


def ratio_table(days, py: str) -> None:
    print("| day | graph job: wall (s) / peak RSS (MB) | examples job, 3 kinds: wall (s) / "
          "peak RSS (MB) | examples / graph wall | skip-gram pairs (records, MB) | "
          "sequences | ranking lists |")
    print("|:---|---:|---:|---:|---:|---:|---:|")
    for day in days:
        day.prepare(py)
        graph = run_job(py, "beam_jobs.cooccurrence_graph", day, "graph")
        examples = run_job(py, "beam_jobs.training_examples", day, "examples",
                           [f"--user_id_salt_file={SALT}"])
        s = examples_summary(examples["out"])
        pairs = s["skipgram"]["counts"]
        n_pairs = pairs.get("skipgram_pairs_train", 0) + pairs.get("skipgram_pairs_eval", 0)
        print(f"| {day.label} | {graph['wall']:.1f} / {graph['peak_mb']:.0f} | "
              f"{examples['wall']:.1f} / {examples['peak_mb']:.0f} | "
              f"{examples['wall'] / graph['wall']:.2f} | {n_pairs:,} "
              f"({s['skipgram']['records']:,}, {s['skipgram']['bytes'] / 2**20:.1f}) | "
              f"{s['sequences']['records']:,} | {s['ranking']['records']:,} |", flush=True)
        print(json.dumps({"day": day.label, "summary": s,
                          "bytes_per_pair": s["skipgram"]["bytes"] / max(1, n_pairs)}),
              file=sys.stderr)


def shards_table(day: Day, py: str) -> None:
    day.prepare(py)
    print("| --max_rows_per_shard | wall (s) | peak RSS (MB) | content digest |")
    print("|---:|---:|---:|:---|")
    for rows in (1_000_000, 250_000, 62_500):
        run = run_job(py, "beam_jobs.training_examples", day, f"examples_{rows}",
                      [f"--user_id_salt_file={SALT}", f"--max_rows_per_shard={rows}"])
        print(f"| {rows:,} | {run['wall']:.1f} | {run['peak_mb']:.0f} | "
              f"{records_digest(run['out'])} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=os.path.join(ROOT, "bench_work"))
    parser.add_argument("--only", choices=["ratio", "shards"], default=None)
    args = parser.parse_args(argv)
    py = sys.executable
    five = Day(args.work, 5_000_000)
    long_day = Day(args.work, 2_000_000, articles=1_500_000)
    if args.only in (None, "ratio"):
        ratio_table([five, long_day], py)
    if args.only in (None, "shards"):
        shards_table(five, py)


if __name__ == "__main__":
    main()
