"""Benchmark: the co-occurrence graph job against the same computation in DuckDB SQL.

For each size N: generate N events, validate them once (beam_jobs.validate_events),
then time, as whole processes (imports count), (a) the graph job on the validated
Parquet and (b) an independent DuckDB SQL build of the same count-ranked top-K
graph from the same files; check that both give exactly the same edges, and print
wall time, the ratio and the peak memory (RSS of the process tree) of each.

    .venv/bin/python benchmarks/cooccurrence_bench.py --sizes 1000000 5000000
"""

import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUN_DATE = "2026-11-26"

DUCKDB_SCRIPT = r"""
import sys, duckdb
files, out, gap_us, window, min_count, top_k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.execute(f'''
COPY (
WITH inter AS (
  SELECT user_id, event_id, epoch_us(event_timestamp) AS t, article_id
  FROM read_parquet('{files}')
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


def hash_text(text: str) -> int:
    import zlib
    return zlib.crc32(text.encode())


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
    """(wall seconds, peak tree RSS in MB) of a command; raises when it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{output.decode()[-3000:]}")
    return wall, peak[0] / 1024.0


def job_edges(day_dir):
    sys.path.insert(0, ROOT)
    from transforms.publish import read_file_set
    return {(e["src_article_id"][0].decode(), e["dst_article_id"][0].decode(), e["count"][0])
            for e in read_file_set(day_dir, "edges")}


def duckdb_edges(path):
    import pyarrow.parquet as pq
    t = pq.read_table(path).to_pydict()
    return set(zip(t["src_article_id"], t["dst_article_id"], t["count"]))


def bench(n, work, top_k, workers, py, client_mix=""):
    tag = f"{n}" + (f"_mix{abs(hash_text(client_mix)) % 10**8}" if client_mix else "")
    events = os.path.join(work, f"events_{tag}")
    out = os.path.join(work, f"out_{tag}")
    if not os.path.exists(events):
        subprocess.run([py, "-m", "datagen.events", "--rows", str(n), "--run_date", RUN_DATE,
                        "--seed", "11", "--out_dir", events]
                       + (["--client_mix", client_mix] if client_mix else []),
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if not os.path.exists(os.path.join(out, "validated", f"dt={RUN_DATE}", "_SUCCESS")):
        subprocess.run([py, "-m", "beam_jobs.validate_events", "--runner=FnApiRunner",
                        f"--events={events}", f"--run_date={RUN_DATE}", f"--output_dir={out}",
                        "--stats_sample_fraction=0.05"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job_cmd = [py, "-m", "beam_jobs.cooccurrence_graph", "--runner=FnApiRunner",
               f"--validated_events={out}/validated", f"--run_date={RUN_DATE}",
               f"--output_dir={out}", "--weighting=count", "--rank_by=count",
               f"--top_k={top_k}"]
    if workers > 1:
        job_cmd += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    job_s, job_mb = timed(job_cmd)
    duck_out = os.path.join(work, f"duckdb_{tag}.parquet")
    files = os.path.join(out, "validated", f"dt={RUN_DATE}", "*.parquet")
    duck_s, duck_mb = timed([py, "-c", DUCKDB_SCRIPT, files, duck_out, str(30 * 60 * 10**6),
                             "5", "2", str(top_k)])
    ours = job_edges(os.path.join(out, "cooccurrence", f"dt={RUN_DATE}"))
    theirs = duckdb_edges(duck_out)
    return dict(n=n, job_s=job_s, job_mb=job_mb, duck_s=duck_s, duck_mb=duck_mb,
                edges=len(ours), agree=ours == theirs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000],
                        help="event counts to benchmark")
    parser.add_argument("--top_k", type=int, default=20, help="neighbours per article")
    parser.add_argument("--workers", type=int, default=1,
                        help="Beam worker processes for the graph job")
    parser.add_argument("--client_mix", default="",
                        help="client event shares for the generator (datagen --client_mix); "
                             "default: the generator's own mix")
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "bench_work"),
                        help="where generated data and outputs go")
    args = parser.parse_args()
    py = sys.executable
    rows = [bench(n, args.work_dir, args.top_k, args.workers, py, args.client_mix)
            for n in args.sizes]
    if args.client_mix:
        print(f"client event mix: {args.client_mix}")
    print(f"| events | graph job (s) | DuckDB SQL (s) | ratio | job peak RSS (MB) | "
          f"DuckDB peak RSS (MB) | top-{args.top_k} edges | identical |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['job_s']:.1f} | {r['duck_s']:.1f} | "
              f"{r['job_s'] / r['duck_s']:.2f}x | {r['job_mb']:.0f} | {r['duck_mb']:.0f} | "
              f"{r['edges']:,} | {'yes' if r['agree'] else 'NO'} |")
    if not all(r["agree"] for r in rows):
        sys.exit("the graph job and DuckDB disagree")


if __name__ == "__main__":
    main()
