"""Run a job for a range of days, one after another.

    python -m flex_templates.backfill --job=daily --from_date=2026-11-01 --to_date=2026-11-07 \\
        --parameter events=bq://P.events.events --parameter output_dir=gs://B/preprocessing \\
        --project=P --build=gs://TEMPLATE_BUCKET/templates/build-<revision>.json \\
        --worker_service_account=... --temp_location=... --staging_location=... [--force]
    python -m flex_templates.backfill --local --job=daily --from_date=... --to_date=... \\
        --parameter events=demo_output/events --parameter output_dir=demo_output/out

Days run in ascending order (a day's article index continues the previous day's), each
waited for; the first failure stops the backfill. A day that is already published and
blessed (summary.json blessed and not overridden, and every kind the job publishes has
its _SUCCESS) is skipped unless --force. On Dataflow each day is a launch of the
build's template with the morning job's fixed jobName (preprocessing-<job>), so a
backfill day and the morning run never run at once: Dataflow refuses the second.
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from flex_templates import schedule
from schemas import contract, features as F

# What each job publishes under <output_dir>/<kind>/dt=D/ with a _SUCCESS marker.
EXAMPLE_KINDS = tuple(f"examples/{kind}" for kind in contract.EXAMPLE_KINDS)
FEATURE_KINDS = (f"features/{F.DAILY_DIR}",) + tuple(f"features/{e}" for e in F.ENTITIES)
PUBLISHED_KINDS = {
    "validate_events": ("quarantine", "validated"),
    "cooccurrence_graph": ("cooccurrence",),
    "training_examples": EXAMPLE_KINDS,
    "features": FEATURE_KINDS,
    # At its default --daily_stages (graph, examples, features).
    "daily": ("quarantine", "validated", "cooccurrence") + EXAMPLE_KINDS + FEATURE_KINDS,
}
TERMINAL_OK = "JOB_STATE_DONE"
TERMINAL_FAILED = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_UPDATED",
                   "JOB_STATE_DRAINED", "JOB_STATE_STOPPED")


def days(from_date: str, to_date: str) -> List[str]:
    first, last = dt.date.fromisoformat(from_date), dt.date.fromisoformat(to_date)
    if first > last:
        raise ValueError(f"--from_date={from_date} is after --to_date={to_date}")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def is_published(output_dir: str, kinds: Sequence[str], day: str) -> bool:
    """Blessed, not overridden, and every kind's _SUCCESS there (local or gs://)."""
    root = output_dir.rstrip("/")
    summary_path = f"{root}/validation/dt={day}/summary.json"
    if not FileSystems.exists(summary_path):
        return False
    with FileSystems.open(summary_path) as handle:
        summary = json.loads(handle.read().decode("utf-8"))
    if summary.get("blessed") is not True or summary.get("overridden") is not False:
        return False
    return all(FileSystems.exists(f"{root}/{kind}/dt={day}/_SUCCESS") for kind in kinds)


def local_command(job: str, day: str, parameters: Dict[str, str]) -> List[str]:
    return [sys.executable, "-m", f"beam_jobs.{job}", f"--run_date={day}"] + [
        f"--{name}={value}" for name, value in sorted(parameters.items())
        if name != "run_date"]


def run_local(job: str, day: str, parameters: Dict[str, str]) -> bool:
    return subprocess.run(local_command(job, day, parameters)).returncode == 0


def launch_request(job: str, day: str, build: schedule.Build, parameters: Dict[str, str],
                   args) -> Dict:
    """The LaunchFlexTemplateRequest (REST JSON) of one day: the morning body with
    run_date set to the day."""
    values = schedule.job_parameters(job, parameters, args.timezone, run_date=day)
    schedule.check_launch(job, values)
    body = schedule.launch_body(job, build, values, args)
    return {"projectId": args.project, "location": args.region, **body}


def run_dataflow(request: Dict, templates_client, jobs_client,
                 poll_seconds: float = 30.0, sleep: Callable = time.sleep) -> bool:
    """Launch and wait until the job reaches a terminal state; True when it is done."""
    from google.cloud import dataflow_v1beta3
    message = dataflow_v1beta3.LaunchFlexTemplateRequest.from_json(
        json.dumps(request), ignore_unknown_fields=False)
    launched = templates_client.launch_flex_template(request=message).job
    print(f"launched {launched.name} ({launched.id})", flush=True)
    while True:
        state = jobs_client.get_job(request=dataflow_v1beta3.GetJobRequest(
            project_id=request["projectId"], location=request["location"],
            job_id=launched.id)).current_state.name
        if state == TERMINAL_OK:
            return True
        if state in TERMINAL_FAILED:
            print(f"{launched.name} ({launched.id}) ended {state}", file=sys.stderr)
            return False
        sleep(poll_seconds)


def backfill(day_list: Sequence[str], published: Callable[[str], bool],
             run_day: Callable[[str], bool], force: bool) -> int:
    """Run the days in order; 0 when every day ran or was skipped, 1 at the first
    failure (later days are not started)."""
    for day in sorted(day_list):
        if not force and published(day):
            print(f"{day}: published and blessed, skipped (--force reruns it)", flush=True)
            continue
        print(f"{day}: running", flush=True)
        if not run_day(day):
            print(f"FAILED: {day}; later days were not started", file=sys.stderr)
            return 1
        print(f"{day}: done", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flex_templates.backfill",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--job", default="daily", help="The job module of beam_jobs to run.")
    p.add_argument("--from_date", required=True, help="First day, YYYY-MM-DD.")
    p.add_argument("--to_date", required=True, help="Last day, YYYY-MM-DD (inclusive).")
    p.add_argument("--local", action="store_true",
                   help="Run each day here (python -m beam_jobs.<job>), not on Dataflow.")
    p.add_argument("--force", action="store_true",
                   help="Rerun days that are already published and blessed.")
    p.add_argument("--poll_seconds", type=float, default=30.0,
                   help="How often a Dataflow job's state is read.")
    schedule.add_launch_arguments(p, required=False)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        day_list = days(args.from_date, args.to_date)
        parameters = schedule.given_parameters(args.parameter)
        if "output_dir" not in parameters:
            raise ValueError("--parameter output_dir=... is required")
        if args.job not in PUBLISHED_KINDS:
            raise ValueError(f"--job={args.job}: one of {', '.join(sorted(PUBLISHED_KINDS))}")
        if args.local:
            schedule.check_launch(args.job, {**parameters, "timezone": args.timezone,
                                             "run_date": day_list[0]})

            def run_day(day):
                return run_local(args.job, day, {**parameters, "timezone": args.timezone})
        else:
            missing = [f"--{n}" for n in ("project", "build", "worker_service_account",
                                          "temp_location", "staging_location")
                       if not getattr(args, n)]
            if missing:
                raise ValueError(f"{', '.join(missing)} required on Dataflow (or --local)")
            from google.cloud import dataflow_v1beta3
            build = schedule.Build.load(args.build)
            for day in day_list:   # every request checked before the first launch
                launch_request(args.job, day, build, parameters, args)
            templates = dataflow_v1beta3.FlexTemplatesServiceClient()
            jobs = dataflow_v1beta3.JobsV1Beta3Client()

            def run_day(day):
                return run_dataflow(launch_request(args.job, day, build, parameters, args),
                                    templates, jobs, args.poll_seconds)
    except ValueError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 2
    kinds = PUBLISHED_KINDS[args.job]
    return backfill(day_list, lambda day: is_published(parameters["output_dir"], kinds, day),
                    run_day, args.force)


if __name__ == "__main__":
    sys.exit(main())
