#!/bin/sh
# The fuzz campaign (docs/testing.md#fuzzing): tests/fuzz with FUZZ_EXAMPLES inputs per
# endpoint, in FUZZ_SHARDS pytest processes side by side (1 unless given). Each shard takes
# every n-th endpoint, its own test database and report file, and logs to
# var/fuzz-shard-<i>.log; their reports are merged into var/fuzz-report.json at the end.
set -u
BIN=${BIN:-.venv/bin}
shards=${FUZZ_SHARDS:-1}
mkdir -p var
rm -f var/fuzz-report*.json
if [ "$shards" -eq 1 ]; then
    exec "$BIN/python" -m pytest tests/fuzz -p no:cacheprovider -q
fi
pids=""
i=0
while [ "$i" -lt "$shards" ]; do
    FUZZ_SHARD="$i/$shards" "$BIN/python" -m pytest tests/fuzz -p no:cacheprovider -q \
        >"var/fuzz-shard-$i.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done
status=0
for pid in $pids; do
    wait "$pid" || status=1
done
"$BIN/python" -m tests.fuzz.report "$shards" || status=1
[ "$status" -eq 0 ] || echo "a shard failed: see var/fuzz-shard-*.log" >&2
exit "$status"
