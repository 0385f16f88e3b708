# Quick start: `make demo` and `make test` each set up everything on a fresh Linux machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install data browser test test-fast wheel-smoke lint demo clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

install: $(STAMP)

# The real Fashion-MNIST (IDX files) from Debian's package, where it is missing.
data:
	@if [ ! -f $(FMNIST)/t10k-labels-idx1-ubyte.gz ]; then \
		echo "installing Debian's dataset-fashion-mnist into $(FMNIST)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Debian's Chromium, for the test that opens HTML reports in a real headless browser.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "installing Debian's chromium (headless report tests)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole suite (what CI runs), and the fast tier for the edit-test loop: everything not marked slow (under a
# minute on 2 cores; tests/conftest.py says what is slow). One test process per core, 8 at most (pytest-xdist), each
# test file whole in one process, so that its module fixtures (trained runs, converted models) are built once.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses 8 --dist loadfile

test: install data browser lint wheel-smoke
	$(PYTEST)

test-fast: install data browser
	$(PYTEST) -m "not slow"

# The wheel installed into a fresh virtualenv outside the checkout: train, eval and export with a packaged recipe.
wheel-smoke: install data
	scripts/wheel_smoke.sh $(PY)

# SE-ResNet-20 and its plain twin, 2 epochs each of the fast Fashion-MNIST recipe: about 5 minutes on 2 CPU cores.
demo: install data
	rm -rf runs/demo
	$(VENV)/bin/senet compare se_resnet20 resnet20 --recipe fmnist-fast --epochs 2 --seeds 1 --out-dir runs --name demo
	$(VENV)/bin/senet report runs/demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
