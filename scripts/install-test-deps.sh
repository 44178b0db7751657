#!/usr/bin/env bash
# Test-only dependencies that pip's resolver must not choose by itself.
# Usage: scripts/install-test-deps.sh [VENV_BIN]
set -euo pipefail
BIN=${1:-.venv/bin}

# PortAudio headers, to build PyAudio (AIAvatarKit's clients import it), espeak-ng: the
# local text-to-speech voice, and the source of the real speech the speech tests listen to,
# and Chromium: the browser voice client's test runs it headless with a fake microphone.
"$(dirname "$0")/install-debian-packages.sh" portaudio19-dev espeak-ng chromium

# AIAvatarKit's own clients, to prove wire compatibility. Its declared dependencies pull torch
# and CUDA, so install the package alone plus what its client modules import.
"$BIN/pip" install --quiet --no-deps "aiavatar==0.9.2"
"$BIN/pip" install --quiet "aiofiles>=24.1" "websockets>=13" "numpy>=2" "PyAudio==0.2.14"
