# Two entry points for a fresh machine: `make demo` and `make test` (both set up .venv first).
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a GPU user can run `make install TORCH=torch` inside a CUDA environment.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-demo lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/ppeval demo

lint: install
	$(VENV)/bin/ruff check harness suites tests benchmarks

# pytest exits 5 when it collects no tests; that is not a failure of the code under test.
# `test` leaves out the tests marked slow (they train the demo fixtures and run every suite on them);
# `test-demo` runs those demo validity tests.
test: lint
	$(PY) -m pytest -q -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test-demo: install
	$(PY) -m pytest -q -m slow; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc
