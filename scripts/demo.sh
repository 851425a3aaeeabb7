#!/usr/bin/env bash
# `make demo`: the service end to end on one machine, as a user would run it.
# Starts `lth serve` (API + embedded worker, no Redis), submits a LeNet-300-100 Fashion-MNIST
# experiment, follows it with a progress bar, downloads the winning ticket, loads it with
# safetensors alone, prints the per-level table, and stops the server.
# Usage: scripts/demo.sh [--port N]  (or LTH_DEMO_PORT=N; `make demo DEMO_PORT=N`; default 8765).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=demo-out
PORT=${LTH_DEMO_PORT:-8765}
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    --port=*) PORT=${1#--port=}; shift ;;
    *) echo "usage: scripts/demo.sh [--port N]" >&2; exit 2 ;;
  esac
done
case "$PORT" in ''|*[!0-9]*) echo "error: the port must be a number, got '$PORT'" >&2; exit 2 ;; esac
URL="http://127.0.0.1:${PORT}"
mkdir -p "$OUT"
export LTH_DATA_DIR="${LTH_DATA_DIR:-$OUT/data}"

"$BIN/lth" serve --host 127.0.0.1 --port "$PORT" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -fs "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 0.5
done
echo "lth serve is up on $URL (log: $OUT/serve.log, data: $LTH_DATA_DIR)"

"$BIN/lth" submit examples/lenet_fashion_demo.json --wait --url "$URL" | tee "$OUT/submit.log"
ID=$(grep -oE 'submitted [0-9a-f]{32}' "$OUT/submit.log" | head -n 1 | cut -d' ' -f2)
"$BIN/lth" download "$ID" --ticket -o "$OUT/ticket.safetensors" --url "$URL"
"$BIN/python" - "$OUT/ticket.safetensors" <<'PY'
import json, sys
from safetensors import safe_open
from safetensors.torch import load_file

path = sys.argv[1]
ticket = load_file(path)
with safe_open(path, "pt") as f:
    meta = f.metadata()
masks = {k[5:]: v for k, v in ticket.items() if k.startswith("mask/")}
metrics = json.loads(meta["metrics"])
kept = sum(int(m.sum()) for m in masks.values())
total = sum(m.numel() for m in masks.values())
print(
    f"ticket: level {meta['level']}, {kept:,} of {total:,} weights ({100 * kept / total:.1f}%), "
    f"test accuracy {100 * metrics['early_stop_test_accuracy']:.2f}% at iteration "
    f"{metrics['early_stop_iteration']}; initial weights: "
    f"{sum(1 for k in ticket if k.startswith('init/'))} tensors"
)
PY

DATA=$(cd "$LTH_DATA_DIR" && pwd)
cat <<NEXT

Next steps (the server has stopped; everything it wrote stays in $DATA):
  results:     $DATA/experiments/$ID/results.json (every level, the ticket and why)
  the ticket:  $OUT/ticket.safetensors
  web view:    LTH_DATA_DIR=$DATA $BIN/lth serve --port $PORT
               then open $URL/#/experiments/${ID:0:8}
  terminal:    $BIN/lth status ${ID:0:8} --url $URL   (while it serves)
NEXT
