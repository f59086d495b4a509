# make demo  - the main job: a local control plane and a narrated tour
# make test  - the test suite against real ZooKeeper processes
# make bench - benchmarks (JSON in bench/results/)
# make lint  - ruff and mypy

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test bench lint clean kube-tools

bootstrap:
	@./scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/zkop demo

kube-tools:
	@if [ "$${ZKOP_SKIP_KUBE:-}" != 1 ]; then bash tools/kube/build.sh >/dev/null; fi

test: bootstrap kube-tools
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: bootstrap
	$(PY) bench/run_all.py

lint: bootstrap
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
