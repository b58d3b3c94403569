# One entry point for set-up, running, tests and benchmarks. Needs only python3 (3.11+) and make.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

TEST_STAMP := $(VENV)/.test-plugin-installed

.PHONY: run test setup lint bench clean diagrams

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its test tools

# the sample third-party plugin the tests load through its entry point (tests only, not `make run`)
$(TEST_STAMP): $(STAMP) tests/sample_plugin/pyproject.toml
	$(BIN)/python -m pip install --quiet -e tests/sample_plugin
	touch $(TEST_STAMP)

run: setup  ## create the database, deploy processes/, add demo users, print how to use it
	$(BIN)/sdf init
	@echo
	@echo "Ready. Try (the CLI is $(BIN)/sdf; add --json for machine-readable output):"
	@echo "  $(BIN)/sdf definitions"
	@echo "  $(BIN)/sdf start deliverable_approval --data '{\"deliverable\": \"Design doc\"}' --business-key ACME-1 --as pat"
	@echo "  $(BIN)/sdf tasks --as eli"
	@echo "  $(BIN)/sdf complete TASK_ID --as eli --data '{\"summary\": \"First draft\", \"link\": \"https://example.com/doc\"}'"
	@echo "  $(BIN)/sdf show INSTANCE_ID --history"
	@echo "  $(BIN)/sdf bench"

test: setup $(TEST_STAMP)  ## run the whole test suite (PostgreSQL tests run when 127.0.0.1:5432 answers; required when CI=true)
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/sdf bench --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres

diagrams: setup  ## draw docs/diagrams/<name>.svg for every processes/*.bpmn (tests compare them with the BPMN)
	mkdir -p docs/diagrams
	rm -f docs/diagrams/*.svg
	for f in processes/*.bpmn; do \
		$(BIN)/sdf diagram "$$f" -o "docs/diagrams/$$(basename "$$f" .bpmn).svg" || exit 1; \
	done

clean:
	rm -rf $(VENV) sdf.db sdf.db-wal sdf.db-shm
