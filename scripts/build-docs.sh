#!/usr/bin/env bash
# Build the documentation site (guides from docs/, API reference from the docstrings) with
# MkDocs in strict mode: any warning (a broken link, a page missing from the nav that links to
# it, a docstring mkdocstrings cannot parse) fails the build.
#
#   scripts/build-docs.sh            # builds into a fresh temporary directory, printed at the end
#   scripts/build-docs.sh site       # builds into ./site (gitignored)
#
# Needs the docs extra: pip install -e '.[docs]' (set HTMAP_DOCS_INSTALL=1 to have this script
# install it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${HTMAP_DOCS_INSTALL:-0}" = 1 ]; then
    python3 -m pip install --quiet --disable-pip-version-check -e '.[docs]'
fi

out="${1:-$(mktemp -d "${TMPDIR:-/tmp}/htmap-docs.XXXXXX")/site}"
python3 -m mkdocs build --strict --clean --site-dir "$out"
echo "[build-docs.sh] documentation built in $out"
