# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_output
DEMO_DATE ?= 2026-11-26
DEMO_ROWS ?= 200000
# Beam's DirectRunner first tries to download the Prism binary; pick the in-process runner.
# TensorFlow (imported by TFDV) logs CPU-feature and CUDA-plugin lines at start; keep them
# out of the demo (a job run with --verbose shows them).
export TF_CPP_MIN_LOG_LEVEL ?= 3
RUNNER ?= FnApiRunner

.PHONY: venv browser test test-fast demo bench clean

# requirements.lock: what the jobs run with (the image installs only it);
# requirements-dev.lock: tests and operations tools, installed on top.
$(VENV)/.installed: requirements.lock requirements-dev.lock setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

# The report's browser test (tests/report/test_report_browser.py) opens the day's page in
# Debian's headless Chromium; installed here when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ]; then apt=apt-get; else apt="sudo apt-get"; fi; \
	  DEBIAN_FRONTEND=noninteractive $$apt update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$apt install -y -qq chromium; }

test: venv browser
	$(PY) -m pytest -q tests

# Tiers 1 and 2 (tests/README.md): every test but whole jobs.
test-fast: venv
	$(PY) -m pytest -q tests -m "not jobs"

demo: venv
	$(PY) -m datagen.events --rows $(DEMO_ROWS) --run_date $(DEMO_DATE) --timezone Asia/Seoul \
	    --seed 7 --out_dir $(DEMO_DIR)/events
	mkdir -p $(DEMO_DIR) && test -s $(DEMO_DIR)/user_id_salt || \
	    $(PY) -c "import secrets; open('$(DEMO_DIR)/user_id_salt', 'wb').write(secrets.token_bytes(32))"
	$(PY) -m beam_jobs.daily --runner=$(RUNNER) --events=$(DEMO_DIR)/events \
	    --run_date=$(DEMO_DATE) --timezone=Asia/Seoul --output_dir=$(DEMO_DIR)/out \
	    --user_id_salt_file=$(DEMO_DIR)/user_id_salt
	$(PY) -m beam_jobs.report --output_dir=$(DEMO_DIR)/out --run_date=$(DEMO_DATE) --no_page

bench: venv
	$(PY) benchmarks/cooccurrence_bench.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
