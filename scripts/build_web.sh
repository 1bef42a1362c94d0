#!/usr/bin/env bash
# Builds the browser code into web/dist: the one recipe of `make web` and of the Dockerfile's
# web stage. Needs `npm ci` (node_modules) and the generated client in web/src/gen
# (`node_modules/.bin/buf generate --template web/buf.gen.yaml`, which make and the
# Dockerfile run first).
#
# Type-checks every source (tsc, strict), then bundles with esbuild: the web console
# (web/console, Preact and ECharts) into web/dist/console, which the edge serves
# (GOALFLOW_CONSOLE_DIR); the embeddable agent notice (web/embed) into
# web/dist/console/embed; and, unless --console-only (the image), the browser tests' page
# (web/test-page) into web/dist/test-page.
set -euo pipefail
cd "$(dirname "$0")/.."

test_page=1
case "${1:-}" in
    "") ;;
    --console-only) test_page=0 ;;
    *) echo "usage: $0 [--console-only]" >&2; exit 2 ;;
esac

bin=node_modules/.bin
dist=web/dist
bundle() {
    "$bin/esbuild" --bundle --format=iife --target=es2022 --log-level=warning \
        --jsx=automatic --jsx-import-source=preact "$@"
}

"$bin/tsc" --noEmit -p web
if [ "$test_page" = 1 ]; then
    bundle web/test-page/main.ts --sourcemap --outfile="$dist/test-page/main.js"
    cp web/test-page/index.html "$dist/test-page/index.html"
fi
bundle web/console/main.tsx --minify --sourcemap --outfile="$dist/console/console.js"
bundle web/embed/agent-notice.ts --minify --sourcemap \
    --outfile="$dist/console/embed/goalflow-agent.js"
cp web/console/index.html web/console/console.css "$dist/console/"
cp web/embed/example.html web/embed/example.js web/embed/example.css "$dist/console/embed/"
