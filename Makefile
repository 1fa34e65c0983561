# Two commands: `make demo` and `make test`. Each bootstraps .venv when absent.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint bench clean samples docs

# Reinstall only when the project metadata or the pins change (idempotent, fast second run).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py --out outputs

# AFMReader's instrument sample files (pip download of its sdist, cached; git-ignored folder):
# tests/test_sample_files.py skips without them, so `make test` goes on when they cannot be had.
samples: $(STAMP)
	$(BIN)/python tools/fetch_reader_samples.py

test: $(STAMP)
	-$(BIN)/python tools/fetch_reader_samples.py --optional
	$(BIN)/python -m pytest -q --durations=20

lint: $(STAMP)
	$(BIN)/ruff check hybridtmd tests examples benchmarks

# The documentation site (mkdocs.yml) into site/, strict: a broken link, a missing anchor or a
# docstring the numpy parser rejects fails the build. Needs the docs extra:
#   .venv/bin/pip install -c constraints.txt -e ".[docs]"
docs: $(STAMP)
	@test -x $(BIN)/mkdocs || { echo 'mkdocs is missing: .venv/bin/pip install -c constraints.txt -e ".[docs]"' >&2; exit 2; }
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf outputs .pytest_cache site
