# The README's quick start calls `make demo` and `make test`; both set everything up first.
PY ?= python3
PIP := $(PY) -m pip
FASHION := /usr/share/datasets/fashion-mnist
AUSTEN := /usr/lib/R/site-library/janeaustenr

.PHONY: setup data demo test lint bench

setup: data
	$(PIP) install -q torch==2.13.0          # CPU build; must come before anything that depends on torch
	$(PIP) install -q -e '.[dev,ray,tensorboard]'
	-$(PY) -c "import scratchlab.rnn._cext as c; c.main()"  # compiled LSTM loops; on failure the Python ones run

# Real Fashion-MNIST and Jane Austen's novels (the char-lm / word-lm default corpus) from Debian (offline).
# Each is skipped quietly when already there or when apt is unavailable.
data:
	@if [ ! -d $(FASHION) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
		|| echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST experiments will try to download"; \
	fi
	@if [ ! -d $(AUSTEN) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq r-cran-janeaustenr >/dev/null \
		|| echo "warning: could not install r-cran-janeaustenr; use corpus=tinyshakespeare or text_file=PATH"; \
	fi

demo: setup
	$(PY) -m scratchlab reproduce --quick --out runs/reproduce-quick

test: setup
	$(PY) -m pytest -q -n 2

lint:
	ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/run_all.py
