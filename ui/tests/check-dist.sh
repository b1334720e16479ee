#!/usr/bin/env bash
# The committed ui/dist (what the binary embeds) must be what ui/src builds to now: a change to
# the sources without `make ui` would ship a stale dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
npx tsc --noEmit -p .
npx vite build --logLevel error --outDir "$fresh"
if ! diff -r "$fresh" dist >/dev/null; then
  diff -r "$fresh" dist | head -20 >&2
  echo "ui/dist is not what ui/src builds to: run 'make ui' and commit ui/dist" >&2
  exit 1
fi
echo "ui/dist matches ui/src"
