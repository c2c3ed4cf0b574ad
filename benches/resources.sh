#!/usr/bin/env bash
# Resource use of the release binary, printed as a table: CPU and RSS while following MARKETS
# markets (one user stream + one events stream per market) against the built-in simulator, and
# CPU while the exchange is unreachable (the simulator killed). Loopback only.
#
#   bash benches/resources.sh            # 200 markets, 30 s per phase
#   MARKETS=20 SECS=10 bash benches/resources.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MARKETS=${MARKETS:-200}
SECS=${SECS:-30}
TICK_MS=${TICK_MS:-200}

cargo build --release --quiet
BIN=target/release/ocx-sentinel
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM_PORT=$(free_port)
PORT=$(free_port)
cleanup() { kill "${SIM:-}" "${CAR:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

LIST=$(seq -f "M%03g-PERP" 1 "$MARKETS" | paste -sd, -)
"$BIN" simulate --listen "127.0.0.1:$SIM_PORT" --markets "$LIST" --tick-ms "$TICK_MS" >/dev/null 2>&1 &
SIM=$!
ARGS=()
for m in ${LIST//,/ }; do ARGS+=(--market "$m"); done
sleep 0.5
"$BIN" run --api-base "http://127.0.0.1:$SIM_PORT" --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" "${ARGS[@]}" >"$WORK/log" 2>&1 &
CAR=$!

for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null || { echo "not ready:"; tail -20 "$WORK/log"; exit 1; }
sleep 5 # let the first snapshots and reconciliation settle

TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
measure() { # prints CPU % of one core over SECS
  local a b
  a=$(ticks "$CAR"); sleep "$SECS"; b=$(ticks "$CAR")
  awk -v a="$a" -v b="$b" -v t="$TCK" -v s="$SECS" 'BEGIN {printf "%.2f", (b-a)/t/s*100}'
}
EVENTS0=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^ocx_stream_events_total/ {s+=$2} END {print s+0}')
CPU_LIVE=$(measure)
EVENTS1=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^ocx_stream_events_total/ {s+=$2} END {print s+0}')
RSS_LIVE=$(rss_mib "$CAR")
RATE=$(awk -v a="$EVENTS0" -v b="$EVENTS1" -v s="$SECS" 'BEGIN {printf "%.0f", (b-a)/s}')

kill "$SIM"; wait "$SIM" 2>/dev/null || true
sleep 5 # every stream notices and backs off
CPU_DOWN=$(measure)
RSS_DOWN=$(rss_mib "$CAR")

echo
echo "| phase (${MARKETS} markets, $((MARKETS + 1)) streams, ${SECS}s each) | CPU (% of one core) | RSS (MiB) | events/s |"
echo "|---|---|---|---|"
echo "| following the simulator (tick ${TICK_MS} ms) | $CPU_LIVE | $RSS_LIVE | $RATE |"
echo "| exchange unreachable (simulator killed) | $CPU_DOWN | $RSS_DOWN | 0 |"
