# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := libs/common/goalflow_common/pb/.generated
BUF := node_modules/.bin/buf

.PHONY: run demo test bench protos web browser lint typecheck lint-protos lock venv clean

venv: $(INSTALLED)

# Three distributions, editable, in one resolve: the runtime with the dev tools, and the client
# and developer tooling that stay out of the production image (each names `goalflow`, found
# here rather than on an index).
DISTS := pyproject.toml libs/client/pyproject.toml libs/devtools/pyproject.toml
$(INSTALLED): $(DISTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -e libs/client -e libs/devtools
	touch $@

protos: $(GENERATED)

$(GENERATED): $(INSTALLED) scripts/gen_protos.py $(wildcard protos/goals/v1/*.proto)
	$(PY) scripts/gen_protos.py
	touch $@

# `npm ci` installs exactly what package-lock.json pins and never rewrites it, so a test run
# leaves the tree clean (`npm install` rewrote the lock). It fails if package.json and the
# lock disagree: after editing package.json, run `npm install` and commit the new lock.
$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

lint-protos: $(BUF)
	$(BUF) lint

# The browser client: TypeScript messages and service descriptors generated from protos/
# (protoc-gen-es, web/buf.gen.yaml), type-checked by tsc, and bundled by esbuild into
# web/dist: the web console (web/console, Preact and ECharts; the edge serves it), the
# embeddable agent notice (web/embed) and the browser tests' page (web/test-page). All of it
# is build output (.gitignore), rebuilt when a source or a proto changes.
WEB_GEN := web/src/gen/.generated
WEB_DIST := web/dist
WEB_STAMP := $(WEB_DIST)/.built
NODE_BIN := node_modules/.bin
WEB_SOURCES := web/tsconfig.json $(shell find web/src web/console web/embed web/test-page \
	-path web/src/gen -prune -o -type f -print 2>/dev/null)
ESBUILD := $(NODE_BIN)/esbuild --bundle --format=iife --target=es2022 --log-level=warning \
	--jsx=automatic --jsx-import-source=preact

web: $(WEB_STAMP)

$(WEB_GEN): $(BUF) web/buf.gen.yaml $(wildcard protos/goals/v1/*.proto)
	$(BUF) generate --template web/buf.gen.yaml
	touch $@

$(WEB_STAMP): $(WEB_GEN) $(WEB_SOURCES)
	$(NODE_BIN)/tsc --noEmit -p web
	$(ESBUILD) web/test-page/main.ts --sourcemap --outfile=$(WEB_DIST)/test-page/main.js
	cp web/test-page/index.html $(WEB_DIST)/test-page/index.html
	$(ESBUILD) web/console/main.tsx --minify --sourcemap --outfile=$(WEB_DIST)/console/console.js
	$(ESBUILD) web/embed/agent-notice.ts --minify --sourcemap \
		--outfile=$(WEB_DIST)/console/embed/goalflow-agent.js
	cp web/console/index.html web/console/console.css $(WEB_DIST)/console/
	cp web/embed/example.html web/embed/example.js web/embed/example.css $(WEB_DIST)/console/embed/
	touch $@

# The browser tests drive the distribution's Chromium (tests/browser); nothing downloads one.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { echo "No Chromium at $(CHROMIUM): the browser tests need it." \
		"Install it with: apt-get update && apt-get install -y chromium (as root)," \
		"or point CHROMIUM=/path/to/chromium at another build." >&2; exit 1; }

# The production image installs exactly these pins (the Dockerfile): the runtime dependencies
# of pyproject.toml and everything they pull in, and grpcio-tools resolved against those pins
# (the same grpcio and protobuf; the tool itself of that grpcio's release, not newer) for the
# image's code generation. Run after changing a runtime dependency, commit the result;
# tests/test_compose.py fails while the lock and pyproject.toml disagree.
LOCK_FLAGS := --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
	--no-emit-trusted-host --no-emit-options
lock: $(INSTALLED)
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) --output-file requirements/runtime.txt pyproject.toml
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) --output-file requirements/protos.txt requirements/protos.in

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

# mypy --strict over the runtime library and the services (files and options: pyproject.toml).
typecheck: $(GENERATED)
	$(PY) -m mypy

# Starts the embedded database, the SMTP sink, the three services and the edge serving the
# web console (built first; npm ci brings buf, which the README's buf curl examples use too);
# Ctrl-C stops them all.
run: protos web
	$(PY) -m goalflow_dev.devstack

# The whole system end to end on free ports (work folder .run/demo): goals, 30 days of
# recorded traffic, live conversions, reports, a mailed export, then the web console's
# address. Stops what it started; KEEP=1 keeps it all up for the console until Ctrl-C.
demo: protos web
	$(PY) -m goalflow_dev.demo $(if $(KEEP),--keep-running)

test: protos lint-protos web browser lint typecheck
	GOALFLOW_CHROMIUM=$(CHROMIUM) $(PY) -m pytest

bench: protos
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .run libs/common/goalflow_common/pb web/src/gen $(WEB_DIST)
