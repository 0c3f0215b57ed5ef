"""Benchmark: the co-occurrence graph job, by shard count and against DuckDB SQL.

Every day is generated (datagen.events, seed 11) and validated once
(beam_jobs.validate_events); every run below reads that day's validated Parquet.
Each graph run is a whole process (interpreter start and imports count) through
benchmarks/run_job_with_metrics.py, which also reports the job's Beam
distributions; peak memory is the resident memory of the process tree. Each run
writes to an output folder of its own.

Two tables, one run of this script per table (--only), or both:

  shards   the long-catalogue day (--long_events events from --articles distinct
           ids, about 1.3M of them seen at 2M / 1.5M) with the graph job's default
           options at each --shard_counts: wall, peak RSS, the largest shuffled
           element (bytes) and the largest user shard (rows), and whether the
           published edges are identical across the runs.
  compare  default-mix days of --sizes events, and the long-catalogue day: the
           graph job at --weighting=count --rank_by=count --top_k=<top_k> against
           an independent DuckDB SQL build of the same top-K graph from the
           validated Parquet files the day's manifest lists (edges identical?),
           and the job at its default options, timed separately.

    .venv/bin/python benchmarks/cooccurrence_bench.py --only shards
    .venv/bin/python benchmarks/cooccurrence_bench.py --only compare
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUN_DATE = "2026-11-26"
SEED = 11
GRAPH_JOB = "beam_jobs.cooccurrence_graph"
METRICS_MARKER = "JOB_METRICS "  # benchmarks/run_job_with_metrics.py prints it
# The graph job's Beam distributions (namespace, name) this benchmark reports.
SHUFFLED_ELEMENT_BYTES = ("graph", "shuffled_element_bytes")
USER_SHARD_ROWS = ("graph", "user_shard_rows")
# The graph options DuckDB reproduces: the job's defaults for sessions and pairs.
SESSION_GAP_US = 30 * 60 * 10 ** 6
WINDOW = 5
MIN_PAIR_COUNT = 2

DUCKDB_SCRIPT = r"""
import json, sys, duckdb
files = json.load(open(sys.argv[1]))
out, gap_us, window, min_count, top_k = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.read_parquet(files).create_view('validated')
con.execute(f'''
COPY (
WITH inter AS (
  SELECT user_id, event_id, epoch_us(event_timestamp) AS t, article_id
  FROM validated
  WHERE event_name IN ('article_view', 'article_like', 'chat_start')),
marked AS (
  SELECT *, CASE WHEN lag(t) OVER w IS NULL OR t - lag(t) OVER w > {gap_us} THEN 1 ELSE 0 END AS starts
  FROM inter WINDOW w AS (PARTITION BY user_id ORDER BY t, event_id)),
sessions AS (
  SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY t, event_id ROWS UNBOUNDED PRECEDING) AS sid
  FROM marked),
runs AS (
  SELECT *, lag(article_id) OVER (PARTITION BY user_id, sid ORDER BY t, event_id) AS prev
  FROM sessions),
kept AS (
  SELECT user_id, sid, article_id,
         row_number() OVER (PARTITION BY user_id, sid ORDER BY t, event_id) AS pos
  FROM runs WHERE prev IS NULL OR prev <> article_id),
pairs AS (
  SELECT a.article_id AS src, b.article_id AS dst, count(*) AS c
  FROM kept a JOIN kept b
    ON a.user_id = b.user_id AND a.sid = b.sid
   AND b.pos BETWEEN a.pos - {window} AND a.pos + {window} AND a.pos <> b.pos
  WHERE a.article_id <> b.article_id
  GROUP BY 1, 2),
ranked AS (
  SELECT src, dst, c, row_number() OVER (PARTITION BY src ORDER BY c DESC, dst) AS r
  FROM pairs WHERE c >= {min_count})
SELECT src AS src_article_id, dst AS dst_article_id, c AS count FROM ranked WHERE r <= {top_k}
) TO '{out}' (FORMAT PARQUET)''')
"""


# ---------------------------------------------------------------------------------------
# Measuring a process

def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in kB."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def timed(cmd, env=None):
    """(wall seconds, peak tree RSS in MB, stdout) of a command; raises when it fails.
    stderr is kept apart and shown only on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, errors = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n"
                           f"{output.decode()[-2000:]}\n{errors.decode()[-4000:]}")
    return wall, peak[0] / 1024.0, output.decode()


def job_metrics(stdout: str) -> dict:
    """The distributions run_job_with_metrics.py printed: {(namespace, name): max}."""
    lines = [line for line in stdout.splitlines() if line.startswith(METRICS_MARKER)]
    if not lines:
        raise RuntimeError("run_job_with_metrics.py printed no metrics line")
    found = json.loads(lines[-1][len(METRICS_MARKER):])
    return {(namespace, name): value["max"]
            for namespace, names in found.items() for name, value in names.items()}


# ---------------------------------------------------------------------------------------
# Days and their published files

class Day:
    """One generated, validated day under <work>/<tag>/."""

    def __init__(self, work: str, n_events: int, articles=None, client_mix=""):
        self.n_events, self.articles, self.client_mix = n_events, articles, client_mix
        tag = f"{n_events}"
        if articles:
            tag += f"_articles{articles}"
        if client_mix:
            import zlib
            tag += f"_mix{zlib.crc32(client_mix.encode()) % 10 ** 8}"
        self.tag = tag
        self.folder = os.path.join(work, tag)
        self.events = os.path.join(self.folder, "events")
        self.out = os.path.join(self.folder, "out")
        self.validated = os.path.join(self.out, "validated")

    @property
    def label(self) -> str:
        text = f"{self.n_events:,}"
        if self.articles:
            text += f" (catalogue {self.articles:,})"
        return text

    def prepare(self, py: str) -> None:
        """Generate and validate the day unless a previous run did."""
        if not os.path.exists(self.events):
            cmd = [py, "-m", "datagen.events", "--rows", str(self.n_events),
                   "--run_date", RUN_DATE, "--seed", str(SEED), "--out_dir", self.events]
            if self.articles:
                cmd += ["--articles", str(self.articles)]
            if self.client_mix:
                cmd += ["--client_mix", self.client_mix]
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(os.path.join(self.validated, f"dt={RUN_DATE}", "_SUCCESS")):
            proc = subprocess.run(
                [py, "-m", "beam_jobs.validate_events", "--runner=FnApiRunner",
                 f"--events={self.events}", f"--run_date={RUN_DATE}",
                 f"--output_dir={self.out}", "--stats_sample_fraction=0.05"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if proc.returncode:
                raise RuntimeError(f"validating {self.events} failed:\n"
                                   f"{proc.stderr.decode()[-4000:]}")

    def validated_files(self):
        """The validated Parquet files of the day, from its manifest."""
        return parquet_files(os.path.join(self.validated, f"dt={RUN_DATE}"))

    def distinct_articles(self) -> int:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        ids = pa.concat_tables(pq.read_table(path, columns=["article_id"])
                               for path in self.validated_files()).column("article_id")
        return len(pc.unique(pc.drop_null(ids)))


def _readers():
    sys.path.insert(0, ROOT)
    from transforms.publishing import readers, tfrecord
    return readers, tfrecord


def parquet_files(day_dir: str):
    """The Parquet files a published day folder's manifest lists (_SUCCESS -> run id ->
    manifest-<run_id>.json)."""
    readers, _ = _readers()
    file_sets = sorted(readers.published_manifest(day_dir)["file_sets"])
    files = sorted(path for name in file_sets for path in readers.published_files(day_dir, name)
                   if path.endswith(".parquet"))
    if not files:
        raise RuntimeError(f"the manifest of {day_dir} lists no Parquet file")
    return files


def _edge_tables(day_dir: str):
    """The decoded record batches of the day's edges file set."""
    readers, tfrecord = _readers()
    record_lists = readers.read_published(day_dir, "edges", tfrecord.read_tfrecord_file)
    return [tfrecord.decode_examples(records) for records in record_lists if records]


def job_edges(day_dir: str, columns=None) -> set:
    """The published edges as a set of tuples of `columns` (default: every feature, in
    name order; every feature of an edge holds one value)."""
    rows = set()
    for batch in _edge_tables(day_dir):
        names = columns or sorted(batch.schema.names)
        values = []
        for name in names:
            column = batch.column(batch.schema.get_field_index(name))
            flat = column.flatten()
            if len(flat) != batch.num_rows:
                raise RuntimeError(f"edges feature {name} does not hold one value per edge")
            values.append([v.decode() if isinstance(v, bytes) else v for v in flat.to_pylist()])
        rows.update(zip(*values))
    return rows


def duckdb_edges(path: str) -> set:
    import pyarrow.parquet as pq
    t = pq.read_table(path).to_pydict()
    return set(zip(t["src_article_id"], t["dst_article_id"], t["count"]))


# ---------------------------------------------------------------------------------------
# Runs

def run_graph(day: Day, name: str, py: str, options, workers: int) -> dict:
    """One graph run on the day's validated files, into a fresh output folder."""
    out = os.path.join(day.folder, f"graph_{name}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [py, os.path.join(HERE, "run_job_with_metrics.py"), GRAPH_JOB,
           "--runner=FnApiRunner", f"--validated_events={day.validated}",
           f"--run_date={RUN_DATE}", f"--output_dir={out}"] + list(options)
    if workers > 1:
        cmd += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    wall, peak_mb, stdout = timed(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    metrics = job_metrics(stdout)
    return {"wall": wall, "peak_mb": peak_mb, "day_dir": os.path.join(
                out, "cooccurrence", f"dt={RUN_DATE}"),
            "shuffled_bytes": metrics.get(SHUFFLED_ELEMENT_BYTES),
            "shard_rows": metrics.get(USER_SHARD_ROWS)}


def run_duckdb(day: Day, py: str, top_k: int) -> dict:
    files = day.validated_files()
    listing = os.path.join(day.folder, "duckdb_files.json")
    with open(listing, "w") as f:
        json.dump(files, f)
    out = os.path.join(day.folder, f"duckdb_top{top_k}.parquet")
    wall, peak_mb, _ = timed([py, "-c", DUCKDB_SCRIPT, listing, out, str(SESSION_GAP_US),
                              str(WINDOW), str(MIN_PAIR_COUNT), str(top_k)])
    return {"wall": wall, "peak_mb": peak_mb, "edges": duckdb_edges(out), "files": len(files)}


def shards_table(day: Day, shard_counts, py: str, workers: int) -> bool:
    runs = {}
    for count in shard_counts:
        runs[count] = run_graph(day, f"shards_{count}", py, [f"--graph_shards={count}"],
                                workers)
        print(f"  --graph_shards={count}: {runs[count]['wall']:.1f} s", file=sys.stderr)
    edges = {count: job_edges(run["day_dir"]) for count, run in runs.items()}
    reference = edges[shard_counts[0]]
    print(f"\nLong-catalogue day: {day.n_events:,} events, catalogue {day.articles:,}, "
          f"{day.distinct_articles():,} distinct articles in the validated rows; graph job "
          f"at its default options, {workers} worker process(es).\n")
    print("| --graph_shards | wall (s) | peak RSS (MB) | largest shuffled element (bytes) | "
          "largest user shard (rows) | edges | edges identical to the first |")
    print("|:---|---:|---:|---:|---:|---:|:---:|")
    for count, run in runs.items():
        print(f"| {count} | {run['wall']:.1f} | {run['peak_mb']:.0f} | "
              f"{_number(run['shuffled_bytes'])} | {_number(run['shard_rows'])} | "
              f"{len(edges[count]):,} | {'yes' if edges[count] == reference else 'NO'} |")
    same = all(e == reference for e in edges.values())
    print(f"\nedges identical across the {len(runs)} runs: {'yes' if same else 'NO'}")
    return same


def compare_table(days, py: str, top_k: int, workers: int) -> bool:
    rows = []
    for day in days:
        counted = run_graph(day, f"count_top{top_k}", py,
                            ["--weighting=count", "--rank_by=count", f"--top_k={top_k}"],
                            workers)
        duck = run_duckdb(day, py, top_k)
        ours = job_edges(counted["day_dir"], ["src_article_id", "dst_article_id", "count"])
        default = run_graph(day, "default", py, [], workers)
        rows.append((day, counted, duck, ours, default))
        print(f"  {day.label}: count {counted['wall']:.1f} s, DuckDB {duck['wall']:.1f} s, "
              f"default {default['wall']:.1f} s", file=sys.stderr)
    print(f"\nGraph job (--weighting=count --rank_by=count --top_k={top_k}, "
          f"{workers} worker process(es)) against DuckDB SQL on the same validated files, "
          "and the job at its default options:\n")
    print(f"| events | graph job (s) | DuckDB SQL (s) | ratio | job peak RSS (MB) | "
          f"DuckDB peak RSS (MB) | top-{top_k} edges | identical | default options (s) | "
          "default peak RSS (MB) | largest shuffled element (bytes) | "
          "largest user shard (rows) |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|")
    for day, counted, duck, ours, default in rows:
        print(f"| {day.label} | {counted['wall']:.1f} | {duck['wall']:.1f} | "
              f"{counted['wall'] / duck['wall']:.2f}x | {counted['peak_mb']:.0f} | "
              f"{duck['peak_mb']:.0f} | {len(ours):,} | "
              f"{'yes' if ours == duck['edges'] else 'NO'} | {default['wall']:.1f} | "
              f"{default['peak_mb']:.0f} | {_number(default['shuffled_bytes'])} | "
              f"{_number(default['shard_rows'])} |")
    return all(ours == duck["edges"] for _, _, duck, ours, _ in rows)


def _number(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["shards", "compare"], default=None,
                        help="run one table (default: both)")
    parser.add_argument("--long_events", type=int, default=2_000_000,
                        help="events of the long-catalogue day")
    parser.add_argument("--articles", type=int, default=1_500_000,
                        help="catalogue size of the long-catalogue day (datagen --articles)")
    parser.add_argument("--shard_counts", nargs="+", default=["4", "64", "256", "auto"],
                        help="--graph_shards values of the shards table")
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1_000_000, 5_000_000, 10_000_000],
                        help="event counts of the default-mix days of the compare table")
    parser.add_argument("--no_long_day_in_compare", action="store_true",
                        help="leave the long-catalogue day out of the compare table")
    parser.add_argument("--top_k", type=int, default=20,
                        help="neighbours per article in the compare table")
    parser.add_argument("--workers", type=int, default=1,
                        help="Beam worker processes for the graph job")
    parser.add_argument("--client_mix", default="",
                        help="client event shares of the default-mix days (datagen "
                             "--client_mix); default: the generator's own mix")
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "bench_work"),
                        help="where generated data and outputs go (kept between runs: a "
                             "day is generated and validated once)")
    args = parser.parse_args(argv)
    py = sys.executable
    long_day = Day(args.work_dir, args.long_events, articles=args.articles)
    ok = True
    if args.only in (None, "shards"):
        long_day.prepare(py)
        ok &= shards_table(long_day, list(args.shard_counts), py, args.workers)
    if args.only in (None, "compare"):
        days = [Day(args.work_dir, n, client_mix=args.client_mix) for n in args.sizes]
        if not args.no_long_day_in_compare:
            days.append(long_day)
        for day in days:
            day.prepare(py)
        if args.client_mix:
            print(f"\nclient event mix of the default-mix days: {args.client_mix}")
        ok &= compare_table(days, py, args.top_k, args.workers)
    if not ok:
        sys.exit("edges differ (between shard counts, or between the job and DuckDB)")


if __name__ == "__main__":
    main()
