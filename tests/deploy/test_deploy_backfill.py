"""flex_templates.backfill: ascending days, a blessed published day skipped unless
--force, the first failure stops it, and every Dataflow launch uses the morning job's
fixed name with the day as run_date."""

import datetime as dt
import json
import sys
import types

import pytest
from google.cloud import dataflow_v1beta3

from flex_templates import backfill, schedule

pytestmark = pytest.mark.functions

REVISION = "0123456789abcdef0123456789abcdef01234567"
IMAGE = "asia-northeast3-docker.pkg.dev/demo-project/preprocessing/daily@sha256:" + "cd" * 32


SALT = "projects/demo-project/secrets/user-id-salt/versions/1"

def publish(root, day, blessed=True, overridden=False, kinds=None):
    kinds = backfill.PUBLISHED_KINDS["daily"] if kinds is None else kinds
    summary = root / "validation" / f"dt={day}" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"blessed": blessed, "overridden": overridden}))
    for kind in kinds:
        marker = root / kind / f"dt={day}" / "_SUCCESS"
        marker.parent.mkdir(parents=True)
        marker.write_text("run\n")


def test_days_ascending_inclusive():
    assert backfill.days("2026-02-27", "2026-03-02") == [
        "2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
    assert backfill.days("2026-03-01", "2026-03-01") == ["2026-03-01"]
    with pytest.raises(ValueError, match="--from_date=2026-03-02 is after --to_date=2026-03-01"):
        backfill.days("2026-03-02", "2026-03-01")


def test_is_published(tmp_path):
    kinds = backfill.PUBLISHED_KINDS["daily"]
    publish(tmp_path, "2026-11-01")
    publish(tmp_path, "2026-11-02", overridden=True)
    publish(tmp_path, "2026-11-03", blessed=False)
    publish(tmp_path, "2026-11-04", kinds=("quarantine", "validated"))
    # Every kind of the daily job, examples and features included.
    assert set(kinds) == {"quarantine", "validated", "cooccurrence", "examples/skipgram",
                          "examples/sequences", "examples/ranking", "features/_daily",
                          "features/articles", "features/users"}
    publish(tmp_path, "2026-11-06", kinds=[k for k in kinds if k != "features/users"])
    assert [backfill.is_published(str(tmp_path), kinds, d)
            for d in ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05",
                      "2026-11-06")] == [True, False, False, False, False, False]
    assert backfill.is_published(str(tmp_path), ("quarantine", "validated"), "2026-11-04")


def run_recorder(fail_on=()):
    ran = []

    def run_day(day):
        ran.append(day)
        return day not in fail_on
    return ran, run_day


def test_backfill_skips_published_days_and_stops_at_the_first_failure(capsys):
    published = {"2026-11-02"}
    ran, run_day = run_recorder(fail_on={"2026-11-04"})
    code = backfill.backfill(["2026-11-05", "2026-11-01", "2026-11-02", "2026-11-03",
                              "2026-11-04"], published.__contains__, run_day, force=False)
    assert code == 1
    assert ran == ["2026-11-01", "2026-11-03", "2026-11-04"]
    captured = capsys.readouterr()
    assert "2026-11-02: published and blessed, skipped (--force reruns it)" in captured.out
    assert "FAILED: 2026-11-04; later days were not started" in captured.err


def test_force_reruns_published_days():
    ran, run_day = run_recorder()
    assert backfill.backfill(["2026-11-01", "2026-11-02"], lambda d: True, run_day,
                             force=True) == 0
    assert ran == ["2026-11-01", "2026-11-02"]


def test_local_command():
    assert backfill.local_command("daily", "2026-11-03", {
        "output_dir": "out", "events": "ev", "timezone": "Asia/Seoul"}) == [
        sys.executable, "-m", "beam_jobs.daily", "--run_date=2026-11-03", "--events=ev",
        "--output_dir=out", "--timezone=Asia/Seoul"]


def test_main_local_runs_each_day_in_order(tmp_path, monkeypatch):
    out = tmp_path / "out"
    publish(out, "2026-11-02")
    calls = []
    monkeypatch.setattr(backfill, "run_local",
                        lambda job, day, params: calls.append((job, day, params)) or True)
    code = backfill.main(["--local", "--from_date=2026-11-01", "--to_date=2026-11-03",
                          "--parameter", "events=ev", "--parameter", f"output_dir={out}",
                          "--parameter", f"user_id_salt_secret={SALT}",
                          "--timezone=Asia/Tokyo"])
    assert code == 0
    params = {"events": "ev", "output_dir": str(out), "timezone": "Asia/Tokyo",
              "user_id_salt_secret": SALT}
    assert calls == [("daily", "2026-11-01", params), ("daily", "2026-11-03", params)]


def test_main_on_dataflow_needs_the_launch_options(capsys):
    assert backfill.main(["--from_date=2026-11-01", "--to_date=2026-11-01",
                          "--parameter", "output_dir=gs://demo-data/p"]) == 2
    assert ("--project, --build, --worker_service_account, --temp_location, "
            "--staging_location required on Dataflow (or --local)") in capsys.readouterr().err


class FakeDataflow:
    """The two clients: launch returns a job id; get_job walks through given states."""

    def __init__(self, states):
        self.states, self.requests, self.polls = list(states), [], []

    def launch_flex_template(self, request):
        self.requests.append(request)
        return types.SimpleNamespace(job=types.SimpleNamespace(
            name=request.launch_parameter.job_name, id=f"job-{len(self.requests)}"))

    def get_job(self, request):
        self.polls.append((request.project_id, request.location, request.job_id))
        return types.SimpleNamespace(
            current_state=dataflow_v1beta3.JobState[self.states.pop(0)])


def launch_args(tmp_path):
    record = tmp_path / f"build-{REVISION}.json"
    record.write_text(json.dumps({"revision": REVISION, "images": {"daily": IMAGE}}))
    args = backfill.parser().parse_args([
        "--from_date=2026-11-01", "--to_date=2026-11-02", "--project=demo-project",
        f"--build={record}", "--worker_service_account=w@demo-project.iam.gserviceaccount.com",
        "--temp_location=gs://demo-data/tmp", "--staging_location=gs://demo-data/staging"])
    return args, schedule.Build.load(str(record))


def test_dataflow_launch_uses_the_backfill_name_and_the_day(tmp_path):
    args, build = launch_args(tmp_path)
    params = {"events": "bq://demo-project.events.events", "output_dir": "gs://demo-data/p",
              "user_id_salt_secret": SALT}
    request = backfill.launch_request("daily", "2026-11-02", build, params, args)
    fake = FakeDataflow(["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_DONE"])
    sleeps = []
    assert backfill.run_dataflow(request, fake, fake, poll_seconds=5, sleep=sleeps.append)
    sent = fake.requests[0]
    assert isinstance(sent, dataflow_v1beta3.LaunchFlexTemplateRequest)
    assert (sent.project_id, sent.location) == ("demo-project", "asia-northeast3")
    launch = sent.launch_parameter
    # Its own name: Dataflow would refuse the morning's launch under a name it holds.
    assert launch.job_name == "preprocessing-daily-backfill" == \
        schedule.launch_job_name("daily", backfill=True) != schedule.launch_job_name("daily")
    assert dict(launch.parameters) == {**params, "run_date": "2026-11-02",
                                       "timezone": "Asia/Seoul"}
    assert launch.container_spec_gcs_path == f"{tmp_path}/daily-{REVISION}.json"
    assert launch.environment.sdk_container_image == IMAGE
    assert fake.polls == [("demo-project", "asia-northeast3", "job-1")] * 3
    assert sleeps == [5, 5]


def test_a_failed_dataflow_job_is_a_failed_day(tmp_path, capsys):
    args, build = launch_args(tmp_path)
    request = backfill.launch_request("daily", "2026-11-01", build, {
        "events": "bq://demo-project.events.events", "output_dir": "gs://demo-data/p",
        "user_id_salt_secret": SALT}, args)
    fake = FakeDataflow(["JOB_STATE_RUNNING", "JOB_STATE_FAILED"])
    assert backfill.run_dataflow(request, fake, fake, sleep=lambda s: None) is False
    assert "preprocessing-daily-backfill (job-1) ended JOB_STATE_FAILED" in \
        capsys.readouterr().err


def test_a_backfill_launch_that_would_fail_is_refused_before_any_launch(tmp_path, capsys):
    args, build = launch_args(tmp_path)
    with pytest.raises(ValueError, match=r"^daily: its launch would fail in the launcher: give "
                                         "exactly one of --user_id_salt_file"):
        backfill.launch_request("daily", "2026-11-01", build, {
            "events": "bq://demo-project.events.events", "output_dir": "gs://demo-data/p"},
            args)
    # Locally too, before the first day runs.
    assert backfill.main(["--local", "--from_date=2026-11-01", "--to_date=2026-11-02",
                          "--parameter", "events=ev", "--parameter",
                          f"output_dir={tmp_path / 'out'}"]) == 2
    assert "daily: its launch would fail in the launcher" in capsys.readouterr().err



SEOUL = dt.timezone(dt.timedelta(hours=9))


def at(hour, minute, day=26, second=0):
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=SEOUL)


def test_the_morning_window_runs_from_the_quiet_minutes_to_the_grace_after_the_launch():
    window = backfill.morning_window
    assert window(at(5, 29, second=59), "0 6 * * *", "Asia/Seoul", 30) is None
    assert window(at(5, 30), "0 6 * * *", "Asia/Seoul", 30) == at(6, 15)
    assert window(at(6, 14, second=59), "0 6 * * *", "Asia/Seoul", 30) == at(6, 15)
    assert window(at(6, 15), "0 6 * * *", "Asia/Seoul", 30) is None
    # Across midnight, and read in the schedule's time zone whatever `now` is in.
    assert window(at(23, 50, day=25), "10 0 * * *", "Asia/Seoul", 30) == at(0, 25)
    assert window(at(23, 50, day=25).astimezone(dt.timezone.utc), "10 0 * * *",
                  "Asia/Seoul", 30) == at(0, 25)
    assert window(at(5, 59), "0 6 * * *", "Asia/Seoul", 0) is None
    for cron in ("0 6 * * 1", "*/5 * * * *", "0 24 * * *", "60 6 * * *", "0 6 * *"):
        with pytest.raises(ValueError, match=r"expected a daily cron schedule 'M H \* \* \*'"):
            window(at(5, 0), cron, "Asia/Seoul", 30)


class ActiveJobs:
    """list_jobs: the names active at each call, then none."""

    def __init__(self, *calls):
        self.calls, self.requests = list(calls), []

    def list_jobs(self, request):
        self.requests.append(request)
        names = self.calls.pop(0) if self.calls else []
        return [types.SimpleNamespace(name=name) for name in names]


def test_a_backfill_day_waits_out_the_morning_window_and_the_running_morning_job(capsys):
    args = backfill.parser().parse_args([
        "--from_date=2026-11-01", "--to_date=2026-11-02", "--project=demo-project",
        "--poll_seconds=60"])
    clock = [at(5, 40)]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock[0] += dt.timedelta(seconds=seconds)
    jobs = ActiveJobs(["preprocessing-daily", "preprocessing-other"], ["preprocessing-daily"],
                      ["preprocessing-daily-backfill"])
    backfill.wait_for_the_morning(args, jobs, lambda: clock[0], sleep)
    # 35 minutes to the end of the window, then two polls while the morning job runs.
    assert sleeps == [35 * 60, 60, 60] and clock[0] == at(6, 17)
    assert [(r.project_id, r.location, r.filter.name) for r in jobs.requests] == \
        [("demo-project", "asia-northeast3", "ACTIVE")] * 3
    said = capsys.readouterr().out
    assert "waiting until 2026-11-26T06:15:00+09:00: the morning job preprocessing-daily " \
           "launches at 0 6 * * * (Asia/Seoul)" in said
    assert said.count("waiting: the morning job preprocessing-daily is running") == 2
