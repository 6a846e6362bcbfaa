#!/usr/bin/env bash
# Rebuilds the web console's vendored tus client (mediasvc/console/static/vendor/) from the
# npm package pinned in tests/js/package-lock.json: tus-js-client's own browser build, with a
# license header, its source-map comment dropped, and the licenses of what the build bundles.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --prefix tests/js --no-audit --no-fund --silent
modules=tests/js/node_modules
package=$modules/tus-js-client
version=$(node -p "require('./$package/package.json').version")
out=mediasvc/console/static/vendor
mkdir -p "$out"

{
  printf '/*! tus-js-client %s (dist/tus.min.js of the npm package) | MIT License\n' "$version"
  printf ' * Copyright (c) 2015 tus - Resumable File Uploads | https://github.com/tus/tus-js-client\n'
  printf ' * Bundles: js-base64 (BSD-3-Clause), url-parse, querystringify, requires-port (MIT),\n'
  printf ' * buffer, base64-js (MIT), ieee754 (BSD-3-Clause). Full texts: LICENSES.txt beside this file.\n'
  printf ' * Reproduce with scripts/vendor-console.sh. */\n'
  sed '/^\/\/# sourceMappingURL=/d' "$package/dist/tus.min.js"
} > "$out/tus.min.js"

{
  for name in tus-js-client js-base64 url-parse querystringify requires-port; do
    license=$(ls "$modules/$name"/LICEN[CS]E* 2>/dev/null | head -n 1 || true)
    printf '==== %s\n\n' "$name"
    if [ -n "$license" ]; then cat "$license"; else node -p "require('./$modules/$name/package.json').license"; fi
    printf '\n'
  done
  printf '==== buffer, base64-js (MIT) and ieee754 (BSD-3-Clause)\n\n'
  printf 'Bundled into tus-js-client'"'"'s browser build by browserify; Copyright Feross Aboukhadijeh\n'
  printf 'and contributors (buffer, base64-js, ieee754: Copyright 2008 Fair Oaks Labs, Inc.).\n'
} > "$out/LICENSES.txt"

echo "wrote $out/tus.min.js (tus-js-client $version) and $out/LICENSES.txt"
