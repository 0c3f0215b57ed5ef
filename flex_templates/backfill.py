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
build's template under the backfill's own jobName (preprocessing-<job>-backfill), so it
never holds the name the morning launches under, and before each day it keeps out of
the morning's way: it starts no day from --quiet_minutes before the --schedule until
MORNING_GRACE after it (the scheduler's attempt and its one retry), nor while the
morning job (preprocessing-<job>) is active in the region. If both still run one day,
the publishing protocol decides: one of them loses its commit and fails saying so
(docs/deploy.md#backfill).
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence
from zoneinfo import ZoneInfo

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
# After the scheduled time, the scheduler's attempt (deadline 180 s) and its one retry
# (10 minutes later) may still launch the morning job.
MORNING_GRACE = dt.timedelta(minutes=15)
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
    body = schedule.launch_body(job, build, values, args, backfill=True)
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


def morning_window(now: dt.datetime, cron: str, timezone: str,
                   quiet_minutes: int) -> Optional[dt.datetime]:
    """The end of the morning window `now` (timezone-aware) falls in, else None: from
    quiet_minutes before a scheduled launch (cron, daily, in `timezone`) to
    MORNING_GRACE after it."""
    hour, minute = schedule.daily_time(cron)
    local = now.astimezone(ZoneInfo(timezone))
    for days in (-1, 0, 1):
        day = local.date() + dt.timedelta(days=days)
        launch = dt.datetime(day.year, day.month, day.day, hour, minute,
                             tzinfo=ZoneInfo(timezone))
        if launch - dt.timedelta(minutes=quiet_minutes) <= local < launch + MORNING_GRACE:
            return launch + MORNING_GRACE
    return None


def morning_active(jobs_client, project: str, region: str, job: str) -> bool:
    """Whether the morning job of `job` (preprocessing-<job>) is active in the region."""
    from google.cloud import dataflow_v1beta3
    request = dataflow_v1beta3.ListJobsRequest(
        project_id=project, location=region,
        filter=dataflow_v1beta3.ListJobsRequest.Filter.ACTIVE)
    name = schedule.launch_job_name(job)
    return any(found.name == name for found in jobs_client.list_jobs(request=request))


def wait_for_the_morning(args, jobs_client, now: Callable[[], dt.datetime],
                         sleep: Callable = time.sleep) -> None:
    """Return once no morning launch is near (morning_window) and the morning job is
    not active; say what it waits for."""
    while True:
        moment = now()
        until = morning_window(moment, args.schedule, args.timezone, args.quiet_minutes)
        if until is not None:
            print(f"waiting until {until.isoformat()}: the morning job "
                  f"{schedule.launch_job_name(args.job)} launches at {args.schedule} "
                  f"({args.timezone})", flush=True)
            sleep(max(1.0, (until - moment).total_seconds()))
            continue
        if morning_active(jobs_client, args.project, args.region, args.job):
            print(f"waiting: the morning job {schedule.launch_job_name(args.job)} is "
                  "running", flush=True)
            sleep(args.poll_seconds)
            continue
        return


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
    p.add_argument("--schedule", default=schedule.DEFAULT_SCHEDULE,
                   help="The morning job's daily cron schedule 'M H * * *', in --timezone "
                        "(as flex_templates.schedule was given it).")
    p.add_argument("--quiet_minutes", type=int, default=30,
                   help="On Dataflow, start no day from this many minutes before the "
                        "schedule until the morning job has launched and ended.")
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

            schedule.daily_time(args.schedule)
            if args.quiet_minutes < 0:
                raise ValueError(f"--quiet_minutes={args.quiet_minutes} must be >= 0")

            def run_day(day):
                wait_for_the_morning(args, jobs,
                                     lambda: dt.datetime.now(dt.timezone.utc))
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
