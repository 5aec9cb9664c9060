# laionlab: `make demo` builds the embedded demo and materialises the graph; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DAGSTER := $(VENV)/bin/dagster

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The parameter profile every launch path applies (profiles/, asset_defs/profile.py): the demo's
# scaled sizes while the source is the embedded demo, the papers' as soon as you point
# LAIONLAB_SOURCE_URI at real LAION (or set LAIONLAB_PROFILE yourself).
ifeq ($(origin LAIONLAB_SOURCE_URI),undefined)
export LAIONLAB_PROFILE ?= demo
else
export LAIONLAB_PROFILE ?= paper
endif
export LAIONLAB_DATA_ROOT ?= $(CURDIR)/data/lab
export LAIONLAB_SOURCE_URI ?= $(CURDIR)/data/demo/laion_parts
export LAIONLAB_DEMO_ROOT ?= $(CURDIR)/data/demo
export LAIONLAB_DATASET_CATALOG ?= $(CURDIR)/data/demo/datasets.yaml
# file:// URLs are downloaded only under these folders (':'-separated): the demo's own
export LAIONLAB_ALLOWED_FILE_ROOTS ?= $(LAIONLAB_DEMO_ROOT)
# No network at run time: Hugging Face stays offline; img2dataset's albumentations must not phone home.
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_MODE := disabled
export DAGSTER_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
# Concurrent steps of the `gpu` pool: one per GPU; on a host without one the pool bounds the
# heavy CPU steps instead (2: the demo's 2-core machines; a backfill of the demo waits mostly on it)
export LAIONLAB_GPU_POOL_LIMIT ?= $(shell n=$$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); [ "$$n" -gt 0 ] 2>/dev/null && echo $$n || echo 2)
# glibc: large blocks from mmap and few arenas, so the heap is returned between batches
# (20k-image part: peak 2.2 -> 1.7 GiB; see laionlab/embed/encode.py)
export MALLOC_MMAP_THRESHOLD_ ?= 131072
export MALLOC_ARENA_MAX ?= 2

.PHONY: venv demo demo-data test lint dev e2e bench clean

venv: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

# pip (not uv/poetry) so torch/torchvision come from the local wheels where a machine has them.
# A registry download cut off mid-file (seen in CI: "incomplete-download" of a 55 MB wheel)
# is resumed by pip (--resume-retries) and, failing that, the whole step is tried again.
PIP_INSTALL = $(PY) -m pip install --quiet --retries 10 --timeout 60 --resume-retries 20
define retry
	@for attempt in 1 2 3; do $(1) && break; \
	  if [ $$attempt = 3 ]; then echo "pip install failed 3 times (see the errors above)" >&2; exit 1; fi; \
	  echo "install attempt $$attempt failed; retrying in 15 s" >&2; sleep 15; done
endef

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call retry,$(PY) -m pip install --quiet --retries 10 --timeout 60 --upgrade "pip>=25.1")
	$(call retry,$(PIP_INSTALL) "torch==2.14.1" "torchvision==0.29.1" || $(PIP_INSTALL) "torch<=2.14.1" "torchvision<=0.29.1")
	$(call retry,$(PIP_INSTALL) -e ".[dev]")
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml FORCE
	@mkdir -p $(DAGSTER_HOME)
	@sed 's/default_limit: 1$$/default_limit: $(LAIONLAB_GPU_POOL_LIMIT)/' dagster.yaml > $@

FORCE:

demo-data: venv
	$(PY) -m laionlab.demo --root $(LAIONLAB_DEMO_ROOT)

# The main job: one `dagster job execute` run of ingest_job per demo part (laion_part is a
# dynamic partition set), then every other asset in dependency order, one run of its named job
# per partition (jobs/demo.py run). Parameters (sizes, loader workers, download processes) come
# from the profile, as in the UI and the daemon: no run config here.
demo: demo-data
	$(PY) -m jobs.demo register
	@start=$$(date +%s); \
	for part in $$($(PY) -m jobs.demo parts); do \
	  echo "== ingest_job [$$part]"; \
	  $(DAGSTER) job execute -f definitions.py -a defs -j ingest_job --tags "{\"dagster/partition\": \"$$part\"}" || exit 1; \
	done; \
	echo "demo: ingest of all parts in $$(( $$(date +%s) - start )) s"; \
	$(PY) -m jobs.demo run || exit 1; \
	echo "demo: whole graph in $$(( $$(date +%s) - start )) s"
	$(PY) -m jobs.demo summary

test: venv lint
	$(PY) -m pytest -q tests

# ruff (pinned in the dev extra): pyflakes + pycodestyle + import order, and the formatter's layout
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

dev: venv
	$(DAGSTER) dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The UI in a real browser: the demo materialised, dagster-webserver on 127.0.0.1, headless
# Debian Chromium (installed here when missing and run as root); screenshots in e2e-artifacts/.
# Then "Materialize all" clicked in that browser on a fresh instance (daemon + webserver, data/e2e/),
# the backfill timed, its outputs compared with the demo's, and a new part through the sensors.
e2e: demo
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq -o Acquire::Retries=5 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Acquire::Retries=5 chromium >/dev/null; } || \
	  { echo "make e2e needs Debian's chromium: apt-get install chromium"; exit 1; }
	$(PY) e2e/ui_check.py
	$(PY) e2e/materialize_all.py

bench: venv
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf data .dagster_home/storage .dagster_home/history .dagster_home/logs .dagster_home/schedules
