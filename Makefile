# The two commands of the README:
#   make demo   a real rollback on SQLite: 3.2.1 writes, downgrade, 3.1.8 crashes, the bridge recovers it
#   make test   the whole suite against real Airflow 3.1.8 / 3.2.x / 3.3.x, SQLite and PostgreSQL
PYTHON ?= python3
VENVS := tools/venvs.sh
TEST_VENV = $(shell $(VENVS) 318t)
# The other 3.1.x readers tests/airflow runs under (venvs.sh NAMEs); 3.1.8 is the main run.
# READERS get the corpus, property and activation tests; READERS_CORPUS the corpus and property
# tests only (activation starts fresh interpreters: most of a reader's time, for the same code).
READERS ?= 310t
READERS_CORPUS ?= 313t 315t 317t

.PHONY: demo test test-fast test-readers run-readers install-test-venv bench wheel

demo:
	$(PYTHON) tools/demo.py

install-test-venv:
	@$(VENVS) 318 318t 321 33x api >/dev/null
	@rm -rf build/wheel && $(TEST_VENV)/bin/python -m build --wheel --outdir build/wheel . >/dev/null
	@$(TEST_VENV)/bin/pip install -q --no-deps --force-reinstall build/wheel/*.whl

# Tests run against the installed wheel (its .pth included), as users get it.
test: install-test-venv
	TZ=UTC HYPOTHESIS_PROFILE=ci $(TEST_VENV)/bin/python -m pytest -p no:cacheprovider --durations=30 $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory run-readers

# Golden corpus, properties (200 examples each) and activation under every other 3.1.x reader,
# each in its own venv with the same wheel: users roll back to the 3.1.x they came from. The
# isolation and side-path tests (real components, minutes each) stay on 3.1.8.
READER_TESTS ?= tests/airflow/test_activation.py tests/airflow/test_corpus.py tests/airflow/test_properties.py
READER_CORPUS_TESTS ?= tests/airflow/test_corpus.py tests/airflow/test_properties.py
test-readers: install-test-venv run-readers

run-readers:
	@set -e; for r in $(READERS) $(READERS_CORPUS); do \
	  v=$$($(VENVS) $$r); \
	  $$v/bin/pip install -q --no-deps --force-reinstall build/wheel/*.whl; \
	  tests="$(READER_TESTS)"; case " $(READERS_CORPUS) " in *" $$r "*) tests="$(READER_CORPUS_TESTS)";; esac; \
	  echo "== $$tests under $$r ($$($$v/bin/python -c 'from importlib.metadata import version; print(version("apache-airflow-core"))'))"; \
	  TZ=UTC HYPOTHESIS_PROFILE=readers $$v/bin/python -m pytest -p no:cacheprovider -q $(READERS_PYTEST_ARGS) $$tests; \
	done

# Everything but the real-component end-to-end suite, with fewer hypothesis examples.
test-fast: install-test-venv
	TZ=UTC $(TEST_VENV)/bin/python -m pytest -p no:cacheprovider -m "not e2e" $(PYTEST_ARGS)

bench: install-test-venv
	$(TEST_VENV)/bin/python benchmarks/run.py

# The wheel to install into a 3.1.8 image: dist/airflow_serde_compat-*.whl
wheel:
	@$(VENVS) 318t >/dev/null
	$(TEST_VENV)/bin/python -m build --wheel --outdir dist .
