"""Wall time and peak RSS of the features stage on generated default days.

    python benchmarks/features_bench.py [--rows 1000000 5000000] [--work bench_work]

For each size N: generates the default day (datagen, seed 7, 2026-11-26, Asia/Seoul)
into <work>/<N>/events unless it is there, then runs `python -m beam_jobs.features
--events=... --output_dir=<work>/<N>/features_out` (validation inline, no lookback day
published before, lookback 7, FnApiRunner, one worker) as a subprocess and prints one
Markdown table row: events, wall seconds, peak RSS of the process tree (sampled every
0.05 s from /proc, benchmarks/cooccurrence_bench.timed), train/eval rows of each entity from the published manifests.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from cooccurrence_bench import RUN_DATE, timed  # noqa: E402  (one process-tree timer)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--work", default=os.path.join(ROOT, "bench_work"))
    args = parser.parse_args(argv)
    py = sys.executable
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    print("| events | wall s | peak RSS MB | article rows train / eval | user rows train / eval |")
    print("|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        work = os.path.join(args.work, str(rows))
        events = os.path.join(work, "events")
        if not os.path.isdir(os.path.join(events, f"dt={RUN_DATE}")):
            subprocess.run([py, "-m", "datagen.events", "--rows", str(rows), "--run_date",
                            RUN_DATE, "--timezone", "Asia/Seoul", "--seed", "7", "--out_dir",
                            events], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(work, "features_out")
        shutil.rmtree(out, ignore_errors=True)
        salt = os.path.join(work, "salt")
        with open(salt, "wb") as handle:
            handle.write(b"benchmark-salt")
        wall, rss, _ = timed([py, "-m", "beam_jobs.features", f"--events={events}",
                              f"--run_date={RUN_DATE}", "--timezone=Asia/Seoul",
                              f"--output_dir={out}", f"--user_id_salt_file={salt}"], env)
        counts = {}
        for entity in ("articles", "users"):
            with open(os.path.join(out, "features", entity, f"dt={RUN_DATE}",
                                   "manifest.json")) as handle:
                sets = json.load(handle)["file_sets"]
            counts[entity] = f"{sets['train']['rows']:,} / {sets['eval']['rows']:,}"
        print(f"| {rows:,} | {wall:.0f} | {rss:,.0f} | {counts['articles']} | "
              f"{counts['users']} |", flush=True)


if __name__ == "__main__":
    main()
