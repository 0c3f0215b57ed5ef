"""Rewrite the validation statistics of days validated before the raw `properties` text
left them: each day's stats_*.tfrecord without it, and its stats.html rendered again.

python -m beam_jobs.rewrite_stats --output_dir=DIR|gs://... [--from_date=YYYY-MM-DD]
    [--to_date=YYYY-MM-DD]

Prints one line per day (rewritten, clean, or changed while rewritten: run it again) and
exits 1 when a day changed meanwhile. docs/validation.md#statistics-written-before.
"""

import argparse
import sys
from typing import List, Optional

from transforms.ingest.stats_rewrite import CHANGED, rewrite_days


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_jobs.rewrite_stats",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True,
                        help="the jobs' --output_dir (local or gs://)")
    parser.add_argument("--from_date", default=None, help="first day to rewrite, YYYY-MM-DD")
    parser.add_argument("--to_date", default=None, help="last day to rewrite, YYYY-MM-DD")
    args = parser.parse_args(argv)
    results = rewrite_days(args.output_dir.rstrip("/"), args.from_date, args.to_date)
    for result in results:
        removed = ", ".join(f"{source} {n}" for source, n in result["removed"].items())
        print(f"{result['day']}  {result['status']}  (features removed: {removed})")
    print(f"{len(results)} day(s) read under {args.output_dir}")
    return 1 if any(r["status"] == CHANGED for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
