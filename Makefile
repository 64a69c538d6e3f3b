# framepipe: `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLES ?= samples
OUT    ?= out

.PHONY: demo test bench samples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changes (the install is editable). The ray and torch
# extras are part of it so that the Ray executor's and the PyTorch adapter's tests run too (they skip
# where those are not installed). torch is pinned first to its CPU wheel, 2.13.0 (on these machines'
# disk): left to the extra's range, pip would take a CUDA build of several GB.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,ray,torch]'
	touch $@

$(SAMPLES)/.complete: | $(VENV)/.installed-test
	$(BIN)/framepipe samples $(SAMPLES)
	touch $@

samples: $(SAMPLES)/.complete

# The sample folder holds one deliberately corrupt file, so the batch exits 1
# ("some files failed"); any other status is a real failure.
demo: $(VENV)/.installed-test $(SAMPLES)/.complete
	@status=0; $(BIN)/framepipe run $(SAMPLES) -o $(OUT) || status=$$?; \
	if [ $$status -eq 1 ]; then echo "demo: done; the one failure above is the deliberately corrupt sample; open $(OUT)/index.html"; \
	elif [ $$status -ne 0 ]; then exit $$status; fi

# pytest exits 5 when it collects nothing: a broken suite, not a pass.
# The habits first (ruff on the tree, mypy strict on the engine; pyproject.toml configures both), then the suite.
test: $(VENV)/.installed-test
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy
	@status=0; $(BIN)/python -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "test: pytest collected no tests" >&2; exit 1; fi; exit $$status

# torchcodec: the last CPU build for torch 2.13 (0.14 and later on PyPI are CUDA builds), on the system's
# FFmpeg libraries (apt-get install ffmpeg); --no-deps keeps pip from touching torch.
$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,ray,torch,bench]'
	$(BIN)/python -m pip install --quiet --no-deps torchcodec==0.13.0
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(SAMPLES) $(OUT) .pytest_cache
