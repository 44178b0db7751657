#!/usr/bin/env bash
# Test-only dependencies that pip's resolver must not choose by itself.
# Usage: scripts/install-test-deps.sh [VENV_BIN]
set -euo pipefail
BIN=${1:-.venv/bin}

# PortAudio headers, to build PyAudio (AIAvatarKit's clients import it), espeak-ng: the
# local text-to-speech voice, and the source of the real speech the speech tests listen to,
# and Chromium: the browser voice client's test runs it headless with a fake microphone.
missing=()
for package in portaudio19-dev espeak-ng chromium; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
fi

# AIAvatarKit's own clients, to prove wire compatibility. Its declared dependencies pull torch
# and CUDA, so install the package alone plus what its client modules import.
"$BIN/pip" install --quiet --no-deps "aiavatar==0.9.2"
"$BIN/pip" install --quiet "aiofiles>=24.1" "websockets>=13" "numpy>=2" "PyAudio==0.2.14"
