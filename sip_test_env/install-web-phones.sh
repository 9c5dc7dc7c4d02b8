#!/bin/sh
# The browser SIP phone the WebRTC tests load into Chromium: JsSIP from the npm registry, pinned,
# into .web-phones/ of this clone (ignored by git), bundled for a plain <script> by esbuild
# (JsSIP ships CommonJS only) as .web-phones/jssip.js, global JsSIP. Idempotent: nothing to do
# once it is there; the tests never fetch anything themselves (they skip, or fail under CI,
# without it).
set -eu
cd "$(dirname "$0")/.."
JSSIP_VERSION="3.13.8"
ESBUILD_VERSION="0.28.2"
TARGET=".web-phones"
BUNDLE="$TARGET/jssip-$JSSIP_VERSION.js"
if [ -f "$BUNDLE" ]; then
    echo "install-web-phones: jssip $JSSIP_VERSION present"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-web-phones: npm missing: apt-get install -y --no-install-recommends npm" >&2
    exit 1
fi
mkdir -p "$TARGET"
npm install --prefix "$TARGET" --no-audit --no-fund --no-save \
    "jssip@$JSSIP_VERSION" "esbuild@$ESBUILD_VERSION"
"$TARGET/node_modules/.bin/esbuild" "$TARGET/node_modules/jssip/lib/JsSIP.js" --bundle \
    --platform=browser --format=iife --global-name=JsSIP --outfile="$BUNDLE.tmp"
mv "$BUNDLE.tmp" "$BUNDLE"
echo "install-web-phones: installed jssip $JSSIP_VERSION"
