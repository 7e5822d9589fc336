#!/usr/bin/env bash
# The README's screenshots (docs/viewer.png, docs/leaderboard.png), made with the project's own
# commands (`bench view`, `bench leaderboard --html`) and headless Chromium. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export BENCH_QUIET=1 HF_HUB_OFFLINE=1
bench=.venv/bin/bench
small=(-O n_test=40 -O n_train=16)
$bench run -m phantom_ldm -d phantom "${small[@]}" --out "$work/phantom_ldm" > /dev/null
$bench run -m box_prior -d phantom "${small[@]}" --out "$work/box_prior" > /dev/null
$bench view "$work/phantom_ldm" "$work/box_prior" --out "$work/view"
$bench leaderboard --out "$work/leaderboards" --html "$work/site"
shot() {  # URL PNG: the first screen of a page, 1400 x 900
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
    --virtual-time-budget=5000 --screenshot="$2" "$1" > /dev/null 2>&1
}
# the viewer sorted by phantom_ldm's miou, worst first (the page's self-test clicks the header)
shot "file://$work/view/index.html#selftest&sort=miou" docs/viewer.png
shot "file://$work/site/phantom__default.html" docs/leaderboard.png
echo "docs/viewer.png and docs/leaderboard.png written"
