# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints-cpu.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# The main job: train a compact G2P model (a few minutes on 2 cores) and compare
# it with the shipped one on the CMUdict test split.
demo: $(STAMP)
	$(BIN)/seqlab demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
