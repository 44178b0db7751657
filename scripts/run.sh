#!/usr/bin/env bash
# Start a Celery worker (with beat embedded, on django-celery-beat's database scheduler) and
# the Live Avatar agents' worker in the background and the ASGI server in the foreground;
# stopping the server stops the workers too. ASGI_SERVER=uvicorn (the default: uvloop and
# httptools, measured faster than daphne for /chat and no slower for /ws,
# docs/operations.md#asgi-server) or daphne.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

"$BIN/celery" -A avatarsite worker --beat \
    --scheduler django_celery_beat.schedulers:DatabaseScheduler \
    --loglevel INFO --concurrency "${CELERY_CONCURRENCY:-2}" &
worker=$!
# Live Avatar agents: keeps a platform session open for every agent switched on in the admin.
"$BIN/python" manage.py run_liveavatar_agents &
agents=$!
trap 'kill "$worker" "$agents" 2>/dev/null; wait "$worker" "$agents" 2>/dev/null' EXIT INT TERM

echo "avatarsite on http://${HOST:-127.0.0.1}:${PORT:-8000}/ (admin at /admin/)"
# The server's own WebSocket ceiling (uvicorn 16 MiB, daphne 1 MiB by default) sits above
# REALTIME_MAX_MESSAGE_BYTES, so a too-large message gets the consumer's explanation rather
# than a dropped connection.
case "${ASGI_SERVER:-uvicorn}" in
uvicorn)
    "$BIN/uvicorn" --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
        --loop uvloop --http httptools --ws websockets-sansio --ws-max-size 33554432 \
        --ws-per-message-deflate false --no-access-log avatarsite.asgi:application
    ;;
daphne)
    "$BIN/daphne" -b "${HOST:-127.0.0.1}" -p "${PORT:-8000}" \
        --websocket-max-message-size 33554432 --websocket-max-frame-size 33554432 \
        avatarsite.asgi:application
    ;;
*)
    echo "ASGI_SERVER must be uvicorn or daphne, not ${ASGI_SERVER}" >&2
    exit 2
    ;;
esac
