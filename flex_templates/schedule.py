"""Cloud Scheduler jobs that launch the Flex Templates of one build every morning.

    python -m flex_templates.schedule --project=P --region=asia-northeast3 \\
        --build=gs://TEMPLATE_BUCKET/templates/build-<revision>.json \\
        --launcher_service_account=dataflow-launcher@P.iam.gserviceaccount.com \\
        --worker_service_account=dataflow-worker@P.iam.gserviceaccount.com \\
        --temp_location=gs://DATA_BUCKET/dataflow/tmp \\
        --staging_location=gs://DATA_BUCKET/dataflow/staging \\
        --parameter events=bq://P.events.events \\
        --parameter output_dir=gs://DATA_BUCKET/preprocessing \\
        --parameter user_id_salt_secret=projects/P/secrets/user-id-salt/versions/1 \\
        --jobs=daily --out_dir=scheduler [--apply]

One scheduler job per template (--jobs, default every job of the build): an HTTP POST
to Dataflow's flexTemplates:launch with an OAuth token of the launcher service
account. The body launches templates/<job>-<revision>.json, the spec cloudbuild.yaml
wrote for the build's revision, with environment.sdkContainerImage the image digest
the build recorded (build-<revision>.json), so the launcher and the workers run the
same image. run_date is always `auto`, the scheduler's time zone is the job's
--timezone, and the launch jobName is fixed (preprocessing-<job>): Dataflow refuses a
second running job of that name in the region, so two mornings never overlap (the
backfill launches under preprocessing-<job>-backfill and keeps out of the morning's
way: flex_templates/backfill.py).

Without --apply it writes the jobs (scheduler_v1.Job JSON, <job>.json, and the
readable launch body, launch-<job>.json) to --out_dir; with --apply it creates each
job, or updates it when it exists, through google-cloud-scheduler.
"""

import argparse
import base64
import importlib
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from beam_jobs import launch

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH_URI = ("https://dataflow.googleapis.com/v1b3/projects/{project}/locations/{region}"
              "/flexTemplates:launch")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The scale-out section of the README: n2-standard-8 workers, at most 40.
DEFAULT_MACHINE_TYPE = "n2-standard-8"
DEFAULT_MAX_WORKERS = 40
DEFAULT_SCHEDULE = "0 6 * * *"
DEFAULT_TIMEZONE = "Asia/Seoul"
_DIGEST_IMAGE = re.compile(r"^[a-z0-9][a-z0-9./_:-]*@sha256:[0-9a-f]{64}$")
_REVISION = re.compile(r"^[0-9a-f]{7,40}$")


def launch_job_name(job: str, backfill: bool = False) -> str:
    """The fixed Dataflow job name of a job's launches: preprocessing-<job> every morning,
    preprocessing-<job>-backfill for the backfill. Dataflow refuses a second running job
    of one name, so two mornings never overlap, and a backfill never holds the name the
    morning launches under."""
    name = "preprocessing-" + job.replace("_", "-")
    return f"{name}-backfill" if backfill else name


def daily_time(cron: str) -> Tuple[int, int]:
    """(hour, minute) of a daily cron schedule "M H * * *"; anything else is refused."""
    found = re.fullmatch(r"\s*(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+\*\s*", cron)
    if not found or int(found.group(1)) > 59 or int(found.group(2)) > 23:
        raise ValueError(f"--schedule={cron!r}: expected a daily cron schedule 'M H * * *' "
                         "(minute and hour of every day)")
    return int(found.group(2)), int(found.group(1))


def scheduler_job_id(job: str) -> str:
    return "preprocessing-" + job.replace("_", "-")


def read_text(path: str) -> str:
    """A local file or a gs:// object."""
    if path.startswith("gs://"):
        with FileSystems.open(path) as handle:
            return handle.read().decode("utf-8")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class Build:
    """The record cloudbuild.yaml writes: build-<revision>.json beside the templates."""

    def __init__(self, path: str, content: Dict):
        if not re.fullmatch(r".*/build-[0-9a-f]{7,40}\.json", path):
            raise ValueError(f"--build={path!r} is not a .../build-<revision>.json record")
        revision = content.get("revision", "")
        if not _REVISION.fullmatch(revision) or not path.endswith(f"/build-{revision}.json"):
            raise ValueError(f"{path}: revision {revision!r} does not match the file name")
        images = content.get("images") or {}
        for job, image in images.items():
            if not _DIGEST_IMAGE.fullmatch(image):
                raise ValueError(f"{path}: image of {job} is not name@sha256:<64 hex>: "
                                 f"{image!r}")
        self.path, self.revision, self.images = path, revision, dict(images)
        self.folder = path.rpartition("/")[0]

    @classmethod
    def load(cls, path: str) -> "Build":
        return cls(path, json.loads(read_text(path)))

    def template(self, job: str) -> str:
        return f"{self.folder}/{job}-{self.revision}.json"


def template_parameters(job: str) -> Dict[str, Dict]:
    """{name: metadata entry} of a job's template (flex_templates/<job>/metadata.json)."""
    with open(os.path.join(HERE, job, "metadata.json"), encoding="utf-8") as handle:
        return {p["name"]: p for p in json.load(handle)["parameters"]}


def job_parameters(job: str, given: Dict[str, str], timezone: str,
                   run_date: str = "auto") -> Dict[str, str]:
    """The template parameters of one launch: the given ones the job declares, run_date
    and timezone; every value checked against the template's regexes, every required
    parameter present."""
    declared = template_parameters(job)
    values = {name: value for name, value in given.items() if name in declared}
    values.update({name: value for name, value in
                   (("run_date", run_date), ("timezone", timezone)) if name in declared})
    for name, value in values.items():
        for pattern in declared[name].get("regexes", []):
            if not re.fullmatch(pattern, value):
                raise ValueError(f"{job}: parameter {name}={value!r} does not match the "
                                 f"template's regex {pattern}")
    missing = [n for n, p in declared.items() if not p["isOptional"] and n not in values]
    if missing:
        raise ValueError(f"{job}: required parameters missing: "
                         + ", ".join(missing) + " (pass --parameter NAME=VALUE)")
    return dict(sorted(values.items()))


def check_launch(job: str, parameters: Dict[str, str]) -> None:
    """Run the job's own option checks (its check_args, offline: no value is read) on a
    launch's parameters, so that a launch that would fail in its launcher is refused
    here, naming what is missing. Template metadata cannot say "one of" (the salt: a file
    or a secret), so a launch can pass the template's checks and still fail these."""
    module = importlib.import_module(f"beam_jobs.{job}")
    argv = [f"--{name}={value}" for name, value in sorted(parameters.items())]
    try:
        args = launch.parse(argv, f"python -m beam_jobs.{job}", module.OPTION_CLASSES,
                            module.DESCRIPTION)
        module.check_args(args)
    except ValueError as err:
        raise ValueError(f"{job}: its launch would fail in the launcher: {err}") from err


def check_salt_version(parameters: Dict[str, str]) -> None:
    """A scheduled launch names a numbered version of the salt's secret, never `latest`:
    a new salt re-pseudonymises every user, so a rotation is a reviewed change of the
    schedule, not something a morning picks up."""
    secret = parameters.get("user_id_salt_secret", "")
    if secret.rstrip("/").endswith("/versions/latest"):
        raise ValueError(f"--parameter user_id_salt_secret={secret}: name a numbered version "
                         "(.../versions/3), not latest; a rotation of the salt is a reviewed "
                         "change of the schedule")


def launch_body(job: str, build: Build, parameters: Dict[str, str], args,
                backfill: bool = False) -> Dict:
    """The LaunchFlexTemplateRequest body (REST JSON) of one launch (a backfill's under
    its own job name)."""
    environment = {
        "sdkContainerImage": build.images[job],
        "serviceAccountEmail": args.worker_service_account,
        "tempLocation": args.temp_location,
        "stagingLocation": args.staging_location,
        "machineType": args.machine_type,
        "maxWorkers": args.max_workers,
    }
    return {"launchParameter": {
        "jobName": launch_job_name(job, backfill),
        "containerSpecGcsPath": build.template(job),
        "parameters": parameters,
        "environment": environment,
    }}


def scheduler_job(job: str, build: Build, parameters: Dict[str, str], args) -> Dict:
    """The scheduler_v1.Job (REST JSON) that launches a job every morning."""
    body = json.dumps(launch_body(job, build, parameters, args), sort_keys=True)
    return {
        "name": f"projects/{args.project}/locations/{args.region}/jobs/"
                f"{scheduler_job_id(job)}",
        "description": f"Launch {build.template(job)} with run_date=auto",
        "schedule": args.schedule,
        "timeZone": args.timezone,
        "httpTarget": {
            "uri": LAUNCH_URI.format(project=args.project, region=args.region),
            "httpMethod": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": base64.b64encode(body.encode("utf-8")).decode("ascii"),
            "oauthToken": {"serviceAccountEmail": args.launcher_service_account,
                           "scope": SCOPE},
        },
        # One retry after 10 minutes: a launch refused because yesterday's run still
        # holds the job name is retried once, never stacked.
        "retryConfig": {"retryCount": 1, "minBackoffDuration": "600s",
                        "maxBackoffDuration": "600s"},
        "attemptDeadline": "180s",
    }


def given_parameters(items: Sequence[str]) -> Dict[str, str]:
    """--parameter NAME=VALUE items as a dict; run_date and timezone are not given."""
    given = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--parameter {item!r}: expected NAME=VALUE")
        if name in ("run_date", "timezone"):
            raise ValueError(f"--parameter {name}: run_date is set by the command (auto "
                             "every morning) and timezone is --timezone (the scheduler's "
                             "time zone)")
        given[name] = value
    return given


def scheduler_jobs(args) -> Dict[str, Dict]:
    build = Build.load(args.build)
    jobs = args.jobs.split(",") if args.jobs else sorted(build.images)
    given = given_parameters(args.parameter)
    declared_anywhere = set()
    out = {}
    for job in jobs:
        if job not in build.images:
            raise ValueError(f"--jobs: {job} is not in {args.build} "
                             f"(it has {', '.join(sorted(build.images))})")
        declared_anywhere |= set(template_parameters(job))
        parameters = job_parameters(job, given, args.timezone)
        check_salt_version(parameters)
        check_launch(job, parameters)
        out[job] = scheduler_job(job, build, parameters, args)
    unused = sorted(set(given) - declared_anywhere)
    if unused:
        raise ValueError(f"--parameter {', '.join(unused)}: no scheduled job declares it")
    return out


def scheduler_client(api_endpoint: Optional[str]):
    """google-cloud-scheduler over REST. An http:// endpoint (an emulator, a test
    server) gets anonymous credentials, so no token ever goes over plain HTTP."""
    from google.cloud import scheduler_v1
    if api_endpoint and api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials
        return scheduler_v1.CloudSchedulerClient(
            transport="rest", credentials=AnonymousCredentials(),
            client_options={"api_endpoint": api_endpoint})
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return scheduler_v1.CloudSchedulerClient(transport="rest", client_options=options)


UPDATED_FIELDS = ["description", "schedule", "time_zone", "http_target", "retry_config",
                  "attempt_deadline"]


def apply(jobs: Dict[str, Dict], client) -> List[str]:
    """Create each job, or update it when it exists. Returns what was done, a line a job."""
    from google.api_core import exceptions
    from google.cloud import scheduler_v1
    from google.protobuf import field_mask_pb2
    done = []
    for job, content in jobs.items():
        message = scheduler_v1.Job.from_json(json.dumps(content), ignore_unknown_fields=False)
        try:
            client.get_job(name=message.name)
        except exceptions.NotFound:
            parent = message.name.rpartition("/jobs/")[0]
            client.create_job(parent=parent, job=message)
            done.append(f"created {message.name}")
        else:
            client.update_job(job=message,
                              update_mask=field_mask_pb2.FieldMask(paths=UPDATED_FIELDS))
            done.append(f"updated {message.name}")
    return done


def write(jobs: Dict[str, Dict], out_dir: str) -> List[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for job, content in jobs.items():
        body = json.loads(base64.b64decode(content["httpTarget"]["body"]))
        for name, data in ((f"{job}.json", content), (f"launch-{job}.json", body)):
            path = os.path.join(out_dir, name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written


def positive_int(value: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", value):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return int(value)


def add_launch_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """What a launch of a template needs (shared with flex_templates.backfill, where
    they are needed only on Dataflow)."""
    parser.add_argument("--project", required=required, help="Google Cloud project id.")
    parser.add_argument("--region", default="asia-northeast3",
                        help="Region of the Dataflow jobs and the scheduler jobs.")
    parser.add_argument("--build", required=required,
                        help="The build record gs://TEMPLATE_BUCKET/templates/"
                             "build-<revision>.json (or a local copy) that cloudbuild.yaml "
                             "wrote; its templates and image digests are launched.")
    parser.add_argument("--worker_service_account", required=required,
                        help="Service account the Dataflow workers run as.")
    parser.add_argument("--temp_location", required=required,
                        help="gs:// temp folder of Dataflow.")
    parser.add_argument("--staging_location", required=required,
                        help="gs:// staging folder of Dataflow.")
    parser.add_argument("--machine_type", default=DEFAULT_MACHINE_TYPE,
                        help="Worker machine type.")
    parser.add_argument("--max_workers", type=positive_int, default=DEFAULT_MAX_WORKERS,
                        help="Most workers autoscaling may start.")
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE,
                        help="The jobs' --timezone (and the scheduler's time zone).")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="A template parameter (events, output_dir, ...), given to every "
                             "job that declares it; repeat for more.")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flex_templates.schedule",
                                description=__doc__.split("\n\n")[0])
    add_launch_arguments(p)
    p.add_argument("--launcher_service_account", required=True,
                   help="Service account whose OAuth token the scheduler sends to "
                        "flexTemplates:launch.")
    p.add_argument("--jobs", default="",
                   help="Comma-separated jobs to schedule; default every job of the build.")
    p.add_argument("--schedule", default=DEFAULT_SCHEDULE,
                   help="Cron schedule, in --timezone.")
    p.add_argument("--out_dir", default="scheduler",
                   help="Where the job definitions are written.")
    p.add_argument("--apply", action="store_true",
                   help="Create or update the scheduler jobs through the Cloud Scheduler API.")
    p.add_argument("--api_endpoint", default=None,
                   help="Cloud Scheduler endpoint; default Google's.")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        jobs = scheduler_jobs(args)
    except ValueError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 2
    for path in write(jobs, args.out_dir):
        print(path)
    if args.apply:
        for line in apply(jobs, scheduler_client(args.api_endpoint)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
