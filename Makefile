# unet-course: `make book` builds the course, `make test` runs everything CI checks.
# Both create .venv and install what they need the first time.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.14.1 torchvision==0.29.1

# Data sets: $UNET_COURSE_DATA if set, else a shared copy beside the checkout, else ./data
# (notebooks download there when they need real data and can reach the network).
UNET_COURSE_DATA ?= $(if $(wildcard ../shared/data/isbi2012),$(abspath ../shared/data),$(CURDIR)/data)
export UNET_COURSE_DATA
# Headless matplotlib for tests and builds (execute unsets it: the kernel must draw inline figures).
export MPLBACKEND := Agg

.PHONY: help install browser js book test execute setup-cells colab bench gpu-check weights mutation clean

help:
	@echo "make book     build the course into _build/html (installs on first use)"
	@echo "make test     run every check CI runs: unit tests, notebooks, benchmarks (smoke), book build"
	@echo "make execute  re-execute all notebooks in place (UNET_COURSE_BUDGET=cpu by default)"
	@echo "make bench    run the speed comparisons in benchmarks/ at full size"
	@echo "make gpu-check REPORT=r.json  on a CUDA machine: precision benchmark, one cross-validation fold, chapter 6 (gpu budget)"
	@echo "make weights  retrain every published checkpoint (cpu budget, ~15 min) and print its SHA-256"
	@echo "make setup-cells  regenerate each notebook's install cell from _config.yml (and the Colab copies)"
	@echo "make colab    rewrite colab/, the plain-Markdown copies of the chapters that Colab opens"
	@echo "make mutation  mutation scores per module into benchmarks/results/mutation.md (hours; not part of make test)"

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[book,dev,widgets,bench,export]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" > /dev/null
	touch $(STAMP)

install: $(STAMP)

# The browser test opens every page of the built book in Debian's headless Chromium.
browser:
	@if command -v chromium > /dev/null && command -v chromedriver > /dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	  echo "installing chromium and chromium-driver for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null; \
	else echo "The browser test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; fi

# The in-browser demo's JavaScript dependencies, pinned by package-lock.json (npm ci only when it changed).
# The book's build copies ONNX Runtime Web from node_modules; without npm it builds the rest.
js:
	@if ! command -v npm > /dev/null; then \
	  echo "The in-browser demo needs Node.js and npm (https://nodejs.org): building the book without it"; \
	elif [ ! node_modules/.package-lock.json -nt package-lock.json ]; then \
	  npm ci --ignore-scripts --no-audit --no-fund; \
	fi

book: $(STAMP) js
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "The book is in $(CURDIR)/_build/html/index.html"

# OMP_WAIT_POLICY=PASSIVE: torch's waiting threads sleep instead of spinning. On a machine busy with
# other work, spinning made a two-thread training step of the smoke U-Net 30-40 times slower.
test: $(STAMP) browser js
	CI=$${CI:-true} OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python -m pytest tests book --nbval-lax -p no:cacheprovider --durations=20

execute: $(STAMP)
	for nb in book/*.ipynb; do \
	  env -u MPLBACKEND UNET_COURSE_BUDGET=$${UNET_COURSE_BUDGET:-cpu} $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=5400 "$$nb" || exit 1; \
	done

# Each chapter's first cell installs the library from the address in _config.yml, with the
# extras the chapter imports; tests/test_notebooks_setup.py fails until this has been run.
setup-cells: $(STAMP)
	$(BIN)/python tests/setup_cells.py
	$(BIN)/python tests/colab_copies.py

# Colab renders no MyST: the book's Colab buttons open copies of the chapters in plain Markdown,
# without outputs; tests/test_colab_copies.py fails until this has been run after a chapter changed.
colab: $(STAMP)
	$(BIN)/python tests/colab_copies.py

# Retrain the published checkpoints exactly as chapter 6 and `unet-course train --budget cpu` do,
# pack each into weights/ and print the SHA-256 to record in unet_course/hub.py (then copy the
# file into unet_course/weights/, which the release attaches).
weights: $(STAMP)
	$(BIN)/unet-course train --data isbi2012 --budget cpu --held-out 5 --seed 0 --out weights/isbi2012-cpu --overwrite
	$(BIN)/python -m unet_course.publish pack weights/isbi2012-cpu weights/unet_isbi2012_cpu.pt --overwrite

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python "$$script" || exit 1; done

# Everything GPU-only the course claims, in one JSON report at REPORT (refused without CUDA, or if REPORT
# exists: ARGS=--overwrite replaces it). benchmarks/README.md says what it runs.
REPORT ?=
ARGS ?=
gpu-check:
	@if [ -z "$(REPORT)" ]; then echo "error: name the report: make gpu-check REPORT=gpu_check.json"; exit 2; fi
	@$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py "$(REPORT)" $(ARGS)

# Mutation testing (mutmut): each module against only the test files that cover it, in scratch copies under
# .mutation/; `make mutation TARGETS="sizes hub"` runs some. Slow (hours on 2 cores), so not part of `make test`.
TARGETS ?=
mutation: $(STAMP)
	OMP_NUM_THREADS=1 nice -n 15 $(BIN)/python benchmarks/mutation.py $(TARGETS)

clean:
	rm -rf _build .mutation
