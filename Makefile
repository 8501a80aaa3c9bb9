# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo venv browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints-cpu.txt -e '.[dev]'
	@# Build seqlab's fused CPU kernels now rather than at first use (about a minute; without a
	@# compiler this prints one line and everything runs on the PyTorch path).
	$(BIN)/python -c "from seqlab.nn import _kernels; _kernels.load()"
	touch $(STAMP)

# tests/test_browser.py drives the system's Chromium through Playwright (never a
# browser that Playwright downloads): install Debian's chromium when it is missing.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	    || [ -n "$$SEQLAB_CHROMIUM" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    echo "installing Chromium for the browser test: $$SUDO apt-get install chromium"; \
	    $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium; \
	else \
	    echo "make test: the browser test needs Chromium and there is no apt-get to install it;" \
	         "install Chromium yourself, or set SEQLAB_CHROMIUM=/path/to/chromium" >&2; \
	    exit 1; \
	fi

test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 -q

# The main job: train a compact G2P model (a few minutes on 2 cores) and compare
# it with the shipped one on the CMUdict test split.
demo: $(STAMP)
	$(BIN)/seqlab demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
