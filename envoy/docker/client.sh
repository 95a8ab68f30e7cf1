#!/bin/sh
# The build pod of the docker-compose demo: it has only the rendered .npmrc (a connector token,
# no registry credential), publishes a package through Envoy and installs it from a fresh cache.
set -eu
export HOME=/tmp/home NPMRC=/etc/npm-connector/default/verdaccio/.npmrc
mkdir -p /tmp/pkg /tmp/app "$HOME"
cd /tmp/pkg
echo '{"name":"hello-connector","version":"1.0.0"}' > package.json
echo "module.exports = 'hello through npm-connector'" > index.js
npm --userconfig "$NPMRC" publish
cd /tmp/app
echo '{"name":"app","private":true}' > package.json
npm --userconfig "$NPMRC" --cache /tmp/cache install hello-connector
node -p "require('hello-connector')"
