#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then opens Mask R-CNN Studio on the bundled demo: a folder of
# synthetic images and the small demo model, all offline. Extra arguments go to the app.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
    echo "demo.sh: no display (DISPLAY and WAYLAND_DISPLAY are unset). On a headless machine run it under" \
        "a virtual one: xvfb-run -a bash scripts/demo.sh" >&2
    exit 1
fi
exec .venv/bin/maskrcnn-studio --demo "$@"
