"""flex_templates.schedule: the scheduler jobs parse as scheduler_v1.Job, their bodies as
LaunchFlexTemplateRequest, and --apply creates then updates them through
google-cloud-scheduler against a local HTTP endpoint that records what it was sent."""

import base64
import http.server
import json
import os
import threading
import urllib.parse

import pytest
from google.cloud import dataflow_v1beta3, scheduler_v1

from flex_templates import generate, schedule

pytestmark = pytest.mark.functions

REVISION = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
JOBS = generate.job_modules()


def image(job):
    return f"asia-northeast3-docker.pkg.dev/demo-project/preprocessing/{job}@{DIGEST}"


@pytest.fixture
def build_record(tmp_path):
    path = tmp_path / "templates" / f"build-{REVISION}.json"
    path.parent.mkdir()
    path.write_text(json.dumps({
        "revision": REVISION,
        "launcher_base": "gcr.io/dataflow-templates-base/python311-template-launcher-base@"
                         + DIGEST,
        "beam_sdk_image": "apache/beam_python3.11_sdk@" + DIGEST,
        "images": {job: image(job) for job in JOBS}}))
    return str(path)


SALT_SECRET = "user_id_salt_secret=projects/demo-project/secrets/user-id-salt/versions/1"


def argv(build, out_dir, *more):
    return ["--project=demo-project", "--region=asia-northeast3", f"--build={build}",
            "--launcher_service_account=dataflow-launcher@demo-project.iam.gserviceaccount.com",
            "--worker_service_account=dataflow-worker@demo-project.iam.gserviceaccount.com",
            "--temp_location=gs://demo-data/dataflow/tmp",
            "--staging_location=gs://demo-data/dataflow/staging",
            "--parameter", "events=bq://demo-project.events.events",
            "--parameter", "output_dir=gs://demo-data/preprocessing",
            "--parameter", SALT_SECRET, f"--out_dir={out_dir}", *more]


def daily_job(build):
    return schedule.scheduler_jobs(schedule.parser().parse_args(
        argv(build, "unused", "--jobs=daily", "--timezone=Asia/Tokyo",
             "--schedule=30 5 * * *")))["daily"]


def test_daily_scheduler_job(build_record):
    content = daily_job(build_record)
    job = scheduler_v1.Job.from_json(json.dumps(content), ignore_unknown_fields=False)
    assert job.name == "projects/demo-project/locations/asia-northeast3/jobs/preprocessing-daily"
    assert job.schedule == "30 5 * * *"
    assert job.time_zone == "Asia/Tokyo"
    target = job.http_target
    assert target.uri == ("https://dataflow.googleapis.com/v1b3/projects/demo-project/"
                          "locations/asia-northeast3/flexTemplates:launch")
    assert target.http_method == scheduler_v1.HttpMethod.POST
    assert dict(target.headers) == {"Content-Type": "application/json"}
    assert target.oauth_token.service_account_email == \
        "dataflow-launcher@demo-project.iam.gserviceaccount.com"
    assert target.oauth_token.scope == "https://www.googleapis.com/auth/cloud-platform"
    assert job.retry_config.retry_count == 1
    assert job.retry_config.min_backoff_duration.total_seconds() == 600
    # The body: base64 in the JSON, bytes in the message, a LaunchFlexTemplateRequest.
    assert target.body == base64.b64decode(content["httpTarget"]["body"])
    request = dataflow_v1beta3.LaunchFlexTemplateRequest.from_json(
        target.body.decode("utf-8"), ignore_unknown_fields=False)
    launch = request.launch_parameter
    assert launch.job_name == "preprocessing-daily"
    assert launch.container_spec_gcs_path == os.path.join(
        os.path.dirname(build_record), f"daily-{REVISION}.json")
    assert dict(launch.parameters) == {
        "events": "bq://demo-project.events.events", "output_dir": "gs://demo-data/preprocessing",
        "run_date": "auto", "timezone": "Asia/Tokyo",
        "user_id_salt_secret": "projects/demo-project/secrets/user-id-salt/versions/1"}
    env = launch.environment
    assert env.sdk_container_image == image("daily")
    assert env.service_account_email == "dataflow-worker@demo-project.iam.gserviceaccount.com"
    assert env.temp_location == "gs://demo-data/dataflow/tmp"
    assert env.staging_location == "gs://demo-data/dataflow/staging"
    assert env.machine_type == "n2-standard-8"
    assert env.max_workers == 40


def test_every_job_of_the_build_gets_a_scheduler_job(build_record, tmp_path):
    args = schedule.parser().parse_args(argv(build_record, str(tmp_path / "out")))
    jobs = schedule.scheduler_jobs(args)
    assert sorted(jobs) == sorted(JOBS)
    names = set()
    for job, content in jobs.items():
        message = scheduler_v1.Job.from_json(json.dumps(content), ignore_unknown_fields=False)
        body = dataflow_v1beta3.LaunchFlexTemplateRequest.from_json(
            message.http_target.body.decode(), ignore_unknown_fields=False)
        assert body.launch_parameter.job_name == "preprocessing-" + job.replace("_", "-")
        assert body.launch_parameter.environment.sdk_container_image == image(job)
        assert body.launch_parameter.parameters["run_date"] == "auto"
        assert message.time_zone == body.launch_parameter.parameters["timezone"] == "Asia/Seoul"
        names.add(message.name)
    assert len(names) == len(JOBS)


def test_main_writes_the_jobs_and_launch_bodies(build_record, tmp_path, capsys):
    out = tmp_path / "out"
    assert schedule.main(argv(build_record, str(out), "--jobs=daily")) == 0
    assert sorted(os.listdir(out)) == ["daily.json", "launch-daily.json"]
    launch = json.loads((out / "launch-daily.json").read_text())
    assert launch == json.loads(base64.b64decode(
        json.loads((out / "daily.json").read_text())["httpTarget"]["body"]))
    assert launch["launchParameter"]["environment"]["maxWorkers"] == 40
    assert capsys.readouterr().out.split() == [str(out / "daily.json"),
                                               str(out / "launch-daily.json")]


@pytest.mark.parametrize("extra,message", [
    (["--parameter", "events=bq://demo-project.events.events; DROP TABLE x"],
     "parameter events='bq://demo-project.events.events; DROP TABLE x' does not match"),
    (["--parameter", "run_date=2026-11-20"], "run_date is set by the command"),
    (["--parameter", "no_such_option=1"], "--parameter no_such_option: no scheduled job"),
    (["--jobs=report"], "--jobs: report is not in"),
])
def test_bad_input_is_refused(build_record, tmp_path, capsys, extra, message):
    assert schedule.main(argv(build_record, str(tmp_path / "out"), *extra)) == 2
    assert message in capsys.readouterr().err


def test_a_required_parameter_is_required(build_record, tmp_path):
    full = argv(build_record, str(tmp_path), "--jobs=daily")
    without = [a for a in full if not a.startswith(("events=", "output_dir="))]
    without = [a for i, a in enumerate(without)
               if not (a == "--parameter" and without[i + 1].startswith("--"))]
    assert len(without) == len(full) - 4
    args = schedule.parser().parse_args(without)
    with pytest.raises(ValueError, match="daily: required parameters missing: events, "
                                         "output_dir"):
        schedule.scheduler_jobs(args)


def test_a_build_record_with_a_tag_is_refused(tmp_path):
    path = tmp_path / f"build-{REVISION}.json"
    path.write_text(json.dumps({"revision": REVISION,
                                "images": {"daily": "x/daily:latest"}}))
    with pytest.raises(ValueError, match="image of daily is not name@sha256"):
        schedule.Build.load(str(path))
    with pytest.raises(ValueError, match="revision 'abc' does not match"):
        schedule.Build(str(path), {"revision": "abc", "images": {}})


class Recorder(http.server.BaseHTTPRequestHandler):
    """A Cloud Scheduler REST endpoint in miniature: jobs kept by name."""
    requests = []
    jobs = {}

    def log_message(self, *args):
        pass

    def _reply(self, code, content):
        data = json.dumps(content).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append({"method": self.command, "path": url.path,
                              "query": urllib.parse.parse_qs(url.query), "body": body,
                              "authorization": self.headers.get("Authorization")})
        path = url.path[len("/v1/"):]
        if self.command == "GET":
            if path in self.jobs:
                return self._reply(200, self.jobs[path])
            return self._reply(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                               "message": f"Job {path} not found."}})
        if self.command == "POST":
            self.jobs[body["name"]] = body
            return self._reply(200, body)
        if self.command == "PATCH":
            self.jobs[path] = {**body, "name": path}
            return self._reply(200, body)
        return self._reply(400, {"error": {"code": 400, "message": "unexpected"}})

    do_GET = do_POST = do_PATCH = _handle


@pytest.fixture
def endpoint():
    Recorder.requests, Recorder.jobs = [], {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_apply_creates_then_updates(build_record, tmp_path, endpoint, capsys):
    name = "projects/demo-project/locations/asia-northeast3/jobs/preprocessing-daily"
    common = argv(build_record, str(tmp_path / "out"), "--jobs=daily", "--apply",
                  f"--api_endpoint={endpoint}")
    assert schedule.main(common) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"created {name}"
    assert schedule.main(common + ["--schedule=0 7 * * *"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"updated {name}"

    expected = json.loads((tmp_path / "out" / "daily.json").read_text())
    seen = [(r["method"], r["path"]) for r in Recorder.requests]
    assert seen == [
        ("GET", f"/v1/{name}"),
        ("POST", "/v1/projects/demo-project/locations/asia-northeast3/jobs"),
        ("GET", f"/v1/{name}"),
        ("PATCH", f"/v1/{name}"),
    ]
    created, updated = Recorder.requests[1], Recorder.requests[3]
    # The REST client sends enums as numbers (httpMethod 1 = POST); as messages the
    # bodies are exactly the written jobs.

    def parsed(content):
        return scheduler_v1.Job.from_json(json.dumps(content), ignore_unknown_fields=False)

    assert created["body"]["httpTarget"]["httpMethod"] == 1
    assert parsed(created["body"]) == parsed({**expected, "schedule": "0 6 * * *"})
    # A PATCH names the job in its path only.
    assert "name" not in updated["body"]
    assert parsed({**updated["body"], "name": name}) == parsed(expected)
    assert expected["schedule"] == "0 7 * * *"
    assert updated["query"]["updateMask"] == [
        "description,schedule,timeZone,httpTarget,retryConfig,attemptDeadline"]
    # No credentials over plain HTTP.
    assert {r["authorization"] for r in Recorder.requests} == {None}
    # What the endpoint holds parses back, body included.
    stored = scheduler_v1.Job.from_json(json.dumps(Recorder.jobs[name]),
                                        ignore_unknown_fields=False)
    request = dataflow_v1beta3.LaunchFlexTemplateRequest.from_json(
        stored.http_target.body.decode(), ignore_unknown_fields=False)
    assert request.launch_parameter.container_spec_gcs_path.endswith(f"daily-{REVISION}.json")


def documented_command(page, program):
    """The argv of the first `python -m <program>` command in a ```sh block of `page`
    (continuation lines joined, comments dropped)."""
    import re
    import shlex
    with open(os.path.join(os.path.dirname(generate.HERE), page), encoding="utf-8") as handle:
        text = handle.read()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n", " ", block).replace("$(git rev-parse HEAD)", "REVISION")
        for line in joined.splitlines():
            if f"python -m {program}" in line:
                words = shlex.split(line, comments=True)
                return words[words.index(program) + 1:]
    raise AssertionError(f"{page} shows no python -m {program} command")


def filled(words, build):
    """The documented command's placeholders filled for this test: the build record a
    local file, the project and buckets named, --apply swapped for --out_dir."""
    subs = {"PROJECT": "demo-project", "DATA_BUCKET": "demo-data"}
    out = []
    for word in words:
        if word.startswith("gs://TEMPLATE_BUCKET/templates/build-"):
            word = build
        for placeholder, value in subs.items():
            word = word.replace(placeholder, value)
        out.append(word)
    return out


@pytest.mark.parametrize("page", ["docs/deploy.md", "flex_templates/scheduling.md"])
def test_the_documented_schedule_passes_every_scheduled_jobs_own_checks(build_record, tmp_path,
                                                                          page, capsys):
    words = filled(documented_command(page, "flex_templates.schedule"), build_record)
    assert "--apply" in words
    words = [w for w in words if w != "--apply"]
    if "--out_dir" in words:
        words[words.index("--out_dir") + 1] = str(tmp_path / "out")
    else:
        words.append(f"--out_dir={tmp_path / 'out'}")
    assert schedule.main(words) == 0, capsys.readouterr().err
    bodies = sorted(n for n in os.listdir(tmp_path / "out") if n.startswith("launch-"))
    assert bodies == ["launch-daily.json"]
    for name in bodies:
        job = name[len("launch-"):-len(".json")]
        with open(tmp_path / "out" / name) as handle:
            parameters = json.load(handle)["launchParameter"]["parameters"]
        schedule.check_launch(job, parameters)      # the job's own checks, again
    # Without the salt, or with the latest version, it refuses, naming the parameter.
    i = next(i for i, w in enumerate(words) if w.startswith("user_id_salt_secret="))
    without = words[:i - 1] + words[i + 1:]
    assert schedule.main(without) == 2
    assert "daily: its launch would fail in the launcher: give exactly one of " \
           "--user_id_salt_file" in capsys.readouterr().err
    latest = list(words)
    latest[i] = "user_id_salt_secret=projects/demo-project/secrets/user-id-salt/versions/latest"
    assert schedule.main(latest) == 2
    assert "--parameter user_id_salt_secret=projects/demo-project/secrets/user-id-salt/" \
           "versions/latest: name a numbered version" in capsys.readouterr().err
