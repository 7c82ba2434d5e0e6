# segshield: the two commands a new user needs are `make demo` and `make test`.
# Each creates/updates .venv and installs what it needs; torch stays pinned to the CPU wheel.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= segshield-out

.PHONY: venv browser demo test lint bench data bundled-model clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned resolve pulls the CUDA build (GBs).
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	# Reference implementation for the attack tests. --no-deps: it declares torchvision, which
	# would replace the pinned CPU torch; its attack code never imports torchvision.
	$(PY) -m pip install -q --no-deps "torchattacks==3.5.1"
	touch $(STAMP)

venv: $(STAMP)

## Main job: audit the bundled U-Net on the bundled nuclei test tiles, gate it with the example policy.
demo: $(STAMP)
	$(VENV)/bin/segshield audit --out $(OUT) --policy examples/policy.toml

## Debian's chromium for the HTML report's browser test (skipped, with the reason, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		>/dev/null 2>&1; } || echo "chromium could not be installed: the browser test will skip"

## The test suite (what CI runs).
test: $(STAMP) browser
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts benchmarks

bench: $(STAMP)
	$(PY) -m pytest benchmarks -q --benchmark-only

## Re-create the bundled dataset from ../shared/datasets (needs the [convert] extra, in [dev]).
data: $(STAMP)
	$(PY) scripts/convert_datasets.py --source ../shared/datasets --dest src/segshield/data/resources

## Re-train the bundled model exactly as shipped.
bundled-model: $(STAMP)
	$(VENV)/bin/segshield train --dataset nuclei --epochs 40 --seed 0 --base-width 16 --depth 3 \
		--out src/segshield/models/resources --name unet_nuclei

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
