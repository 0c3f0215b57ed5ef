"""Run one job in this process and print its Beam distribution metrics as one JSON line.

    python benchmarks/run_job_with_metrics.py beam_jobs.cooccurrence_graph --validated_events=...

Calls `<module>.run(argv)` (the job's own entry point, so options are parsed and
checked as on the command line), waits for the result, then prints

    JOB_METRICS {"graph": {"shuffled_element_bytes": {"max": ..., "min": ..., "count": ...,
                                                      "sum": ...}, ...}}

on stdout: every distribution the job reported, by namespace and name, aggregated
over the steps that report it (max of maxes, sum of counts and sums). A metric the
job does not report is simply absent; the benchmark prints it as n/a. The process
then leaves with os._exit so that the wall time measured from outside is the job's
and not the interpreter's teardown. A failed run prints its traceback and exits 1.
"""

import json
import logging
import os
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "JOB_METRICS "


def distributions(result) -> dict:
    """{namespace: {name: {max, min, count, sum}}} of a finished pipeline result."""
    found: dict = {}
    for metric in result.metrics().query().get("distributions", []):
        value = metric.committed if metric.committed is not None else metric.attempted
        if value is None or not value.count:
            continue
        key = metric.key.metric
        entry = found.setdefault(key.namespace, {}).setdefault(
            key.name, {"max": value.max, "min": value.min, "count": 0, "sum": 0})
        entry["max"] = max(entry["max"], value.max)
        entry["min"] = min(entry["min"], value.min)
        entry["count"] += value.count
        entry["sum"] += value.sum
    return found


def main(argv) -> None:
    if not argv:
        print(__doc__, file=sys.stderr)
        os._exit(2)
    sys.path.insert(0, ROOT)
    logging.getLogger().setLevel(logging.WARNING)
    module_name, job_argv = argv[0], list(argv[1:])
    try:
        import importlib
        module = importlib.import_module(module_name)
        result = module.run(job_argv)
        result.wait_until_finish()
        line = MARKER + json.dumps(distributions(result), sort_keys=True)
    except Exception:  # the top level of a measuring process: report, exit non-zero
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    print(line)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
