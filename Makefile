# Two commands on a fresh machine with Python 3.11 (see README.md):
#   make demo   install into .venv, then run the workflow on data/example
#   make test   install into .venv (with test extras), then run the tests
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test test-quick install clean

# The supported Pythons other than the default get a quick subset (CI: .ci/run), each in its own venv:
#   make test-quick PYTHON=python3.12 VENV=.venv-3.12
QUICK := tests/test_rosenbrock.py tests/test_solver.py tests/test_packaging.py "tests/test_petab.py::test_toy_problem_matches_its_closed_form" \
	"tests/test_petab.py::test_published_log_likelihood[Fujita_SciSignal2010]" \
	"tests/test_petab.py::test_published_log_likelihood[Weber_BMC2015]"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	$(BIN)/python -m pipeline shifts results/example/shifts.csv
	@echo "report: results/example/report.html (figures in results/example/figures/)"

test: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

test-quick: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(QUICK) --durations=5

clean:
	rm -rf $(VENV) .venv-3.12 .venv-3.13 results logs .snakemake
