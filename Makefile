# Two entry points: `make demo` (set up, train on MNIST for ~10 CPU minutes, sample, picture + metrics)
# with the preset's sampler (SDE-DPM-Solver++ 2M, 10 steps), and `make test` (set up, run the whole test suite). Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
FOKKER := $(VENV)/bin/fokker
DEMO ?= runs/demo
MINUTES ?= 10

.PHONY: demo test install lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf $(DEMO)
	$(FOKKER) train --preset mnist --minutes $(MINUTES) --out $(DEMO)
	$(FOKKER) sample --checkpoint $(DEMO) --num 64 --seed 0 --out $(DEMO)/samples.png
	@echo "picture: $(DEMO)/samples.png   training metrics: $(DEMO)/metrics.jsonl"

test: install
	$(PY) -m pytest -q -n auto

lint: install
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
