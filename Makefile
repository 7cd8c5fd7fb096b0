# convertkit: `make demo` runs a conversion on a bundled model, `make test` runs the tests.
# Both install what they need first (a .venv with the pinned stack, the npm packages).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_DIR := converter/formats/tfjs/node
OUT    ?= out

.PHONY: install install-browser test test-all demo lint bench clean

install: $(STAMP)

# Two phases: onnx2tf's exact pins clash with the rest of the stack (see requirements/lock.txt).
$(STAMP): requirements/lock.txt requirements/nodeps.txt pyproject.toml $(NODE_DIR)/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m compileall -q converter  # as pip does for an installed package; see bench
	@if [ -f $(NODE_DIR)/package-lock.json ]; then npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error; fi
	touch $@

# The HTML report of `convertkit run --html` is checked in a real headless Chromium
# (tests/e2e/test_ci_html_browser.py): Debian's package, driven by playwright-core through its
# executablePath; never a browser download. Installed when missing and apt-get is usable (root);
# otherwise it says how, and that test skips (with CI=true it fails).
CHROMIUM ?= /usr/bin/chromium
install-browser:
	@if [ -x "$(CHROMIUM)" ] || [ -n "$$CONVERTKIT_CHROMIUM" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium (headless, for the HTML report test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation >/dev/null) || echo "install-browser: apt-get could not install chromium"; \
	else \
	  echo "install-browser: no $(CHROMIUM); install Debian/Ubuntu's chromium (sudo apt-get install chromium)" \
	       "or set CONVERTKIT_CHROMIUM to a Chromium binary"; \
	fi

test: install install-browser
	$(PY) -m pytest

test-all: install install-browser
	$(PY) -m pytest -m "slow or not slow"

demo: install
	$(PY) -m fixtures.build $(OUT)/fixtures cnn
	$(VENV)/bin/convertkit inspect $(OUT)/fixtures/cnn.pt2
	$(VENV)/bin/convertkit export $(OUT)/fixtures/cnn.pt2 --to onnx -o $(OUT)/demo/cnn-onnx
	$(VENV)/bin/convertkit inspect $(OUT)/demo/cnn-onnx/model.onnx
	$(VENV)/bin/convertkit export $(OUT)/fixtures/cnn.pt2 --to tfjs --validate each -o $(OUT)/demo/cnn-tfjs
	$(VENV)/bin/convertkit optimize $(OUT)/demo/cnn-onnx/model.onnx -p quantize -o $(OUT)/demo/cnn-int8

lint: install
	$(PY) -m ruff check converter tests fixtures bench
	$(PY) -m compileall -q converter

# Bytecode first: an editable install is compiled at import time, or never where PYTHONDONTWRITEBYTECODE
# is set (as on this project's machines): ~0.1 s per process, which pip-installed tools do not pay.
bench: install
	$(PY) -m compileall -q converter
	$(PY) -m bench.run --out $(OUT)/bench

clean:
	rm -rf $(OUT) convertkit-out .pytest_cache
