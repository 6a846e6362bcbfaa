# mediasvc: `make run` serves the API, `make test` runs the suite; both set up what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup run test lint typecheck check bench-upload bench-pipeline bench-concurrency bench-list bench-encode bench-placeholder deploy-local deploy-stop config-example clean

setup: $(STAMP)  ## install system packages and the virtual environment

$(STAMP): requirements.txt requirements-dev.txt setup.py pyproject.toml scripts/system-deps.sh tests/js/package-lock.json
	scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24" "setuptools>=70" wheel
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	# the Node clients the tests drive (tus-js-client), pinned by the lockfile
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/js --no-audit --no-fund --silent; fi
	touch $(STAMP)

run: setup  ## serve the API on http://127.0.0.1:8000 with embedded defaults
	$(BIN)/mediasvc serve $(ARGS)

test: setup  ## run the test suite
	$(BIN)/python -m pytest $(ARGS)

lint: setup  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup  ## mypy over the package as installed (handlers and pipeline inside it)
	rm -rf $(VENV)/typecheck && mkdir -p $(VENV)/typecheck/mediasvc
	cp -rs $(CURDIR)/mediasvc/. $(VENV)/typecheck/mediasvc/
	ln -s $(CURDIR)/handlers $(VENV)/typecheck/mediasvc/handlers
	ln -s $(CURDIR)/pipeline $(VENV)/typecheck/mediasvc/pipeline
	cd $(VENV)/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p mediasvc

check: lint typecheck test  ## everything CI cares about

bench-upload: setup  ## streaming upload benchmark (500 MB direct, 400 MB through tus)
	$(BIN)/python bench/upload.py $(ARGS)

bench-pipeline: setup  ## processing benchmark (24 MP JPEGs)
	$(BIN)/python bench/pipeline.py $(ARGS)

bench-concurrency: setup  ## bursts of 64 and 256 concurrent 5 MB uploads
	$(BIN)/python bench/concurrency.py $(ARGS)

bench-list: setup  ## list latencies over 50,000 seeded records (ARGS="--records 200000")
	$(BIN)/python bench/list.py $(ARGS)

bench-encode: setup  ## JSON encoding of a list page: json.dumps of dicts against msgspec models
	$(BIN)/python bench/encode.py $(ARGS)

bench-placeholder: setup  ## what the placeholder adds to the job of a 12 MP JPEG
	$(BIN)/python bench/placeholder.py $(ARGS)

deploy-local: setup  ## run the shipped supervisord.conf (2 servers on :8000, embedded database)
	mkdir -p var/log
	rm -rf "$$($(BIN)/python -c 'from mediasvc.settings import Settings; print(Settings(data_dir="var").metrics_path)')"
	$(BIN)/supervisord -c supervisord.conf
	@echo "running: $(BIN)/supervisorctl -c supervisord.conf status"

deploy-stop:  ## stop everything supervisord runs
	$(BIN)/supervisorctl -c supervisord.conf shutdown

config-example: setup  ## regenerate config/mediasvc.conf.example from the settings schema
	$(BIN)/python -c "from mediasvc.settings import render; print(render(commented=True), end='')" > config/mediasvc.conf.example

clean:
	rm -rf $(VENV) build *.egg-info
