#!/usr/bin/env bash
# End-to-end checks: the sidecar with its real peers (Prometheus, Alertmanager, Chromium), all on
# 127.0.0.1. Run from the repo root: `bash tests/e2e/run.sh` (CI: .ci/run). See README.md,
# "End-to-end checks". Artefacts (screenshot, measurement table, logs) go to
# ${E2E_ARTEFACTS:-target/e2e}.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
HELPER="$REPO/tests/e2e/helper.py"
BIN="$REPO/target/debug/ocx-sentinel"
ART=${E2E_ARTEFACTS:-target/e2e}
mkdir -p "$ART"
ART=$(cd "$ART" && pwd)
# The scripted breach: SOL-PERP's position jumps to 20 contracts (200 steps of 0.1) this many
# seconds after the simulator starts; its limit here is 10, which the random walk never reaches.
BREACH_AFTER=${E2E_BREACH_AFTER:-60}

step() { printf '\n== %s\n' "$*"; }
fail() {
  printf 'E2E FAIL: %s\n' "$*" >&2
  exit 1
}

# --- peers ---------------------------------------------------------------------------------------
need_install=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need_install+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
  || need_install+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need_install+=(chromium)
if ((${#need_install[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_install[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
  else
    fail "missing ${need_install[*]} (Debian packages); install them or run as root"
  fi
fi
PYTHON=$(command -v python3)
[ -x "$BIN" ] || fail "$BIN is missing: run \`cargo build --locked\` first"

# --- processes, logs, cleanup --------------------------------------------------------------------
TMP=$(mktemp -d)
PIDS=()
LOGS=()
cleanup() {
  rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for log in "${LOGS[@]}" "$TMP/records.jsonl"; do cp "$log" "$ART/" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    for log in "${LOGS[@]}"; do
      printf '\n----- %s (last 60 lines) -----\n' "$(basename "$log")" >&2
      grep -v 'dbus' "$log" | tail -n 60 >&2 || true
    done
    printf '\nE2E: FAILED (logs above and in %s)\n' "$ART" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run in the background, output to $TMP/NAME.log
start() {
  local name=$1
  shift
  "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  LOGS+=("$TMP/$name.log")
}

# wait_for SECONDS WHAT CMD...: retry CMD every 0.2s until it succeeds, or fail naming WHAT
wait_for() {
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "$what did not happen within ${secs}s"
    sleep 0.2
  done
}

get() { curl -fsS --max-time 5 "$@"; }

read -r SIM SIDE DEMO PROM AM HOOK <<<"$("$PYTHON" "$HELPER" ports 6)"

step "start the simulator, the demo, the recorder, Alertmanager, the sidecar and Prometheus"
start simulate "$BIN" simulate --listen "127.0.0.1:$SIM" --excursion "SOL-PERP:200:$BREACH_AFTER"
SIM_START=$(date +%s)
start demo "$BIN" demo --listen "127.0.0.1:$DEMO" --data-dir "$TMP/demo-data"
wait_for 20 "the simulator answering on 127.0.0.1:$SIM" get "http://127.0.0.1:$SIM/perps/positions"
# Webhook receiver (records arrival times) and a second connection to the user stream with the
# sidecar's parameters (records when the breaching delta arrives).
start recorder "$PYTHON" "$HELPER" recorder "$HOOK" "$TMP/records.jsonl" \
  "http://127.0.0.1:$SIM" SOL-PERP 10 "openOnly=true&intervalMs=250"

cat >"$TMP/alertmanager.yml" <<EOF
route:
  receiver: forwarded
  group_by: [alertname, account, market]
  group_wait: 0s
  group_interval: 10s
  repeat_interval: 4h
  routes:
    # What Prometheus sends carries the scrape's job label; the sidecar's forwarder does not.
    - matchers: ['job="ocx-sentinel"']
      receiver: prometheus
receivers:
  - name: forwarded
    webhook_configs: [{url: 'http://127.0.0.1:$HOOK/forwarded', send_resolved: true}]
  - name: prometheus
    webhook_configs: [{url: 'http://127.0.0.1:$HOOK/prometheus', send_resolved: true}]
EOF
start alertmanager prometheus-alertmanager --config.file="$TMP/alertmanager.yml" \
  --storage.path="$TMP/am-data" --web.listen-address="127.0.0.1:$AM" --cluster.listen-address=

cat >"$TMP/alerting.yml" <<EOF
route:
  receiver: hook
  group_by: [alertname, account, market]
  group_wait: 0s
  group_interval: 10s
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs: [{url: 'http://127.0.0.1:$HOOK/sidecar', send_resolved: true}]
EOF
cat >"$TMP/sentinel.yml" <<EOF
listen: 127.0.0.1:$SIDE
api_base: http://127.0.0.1:$SIM
data_dir: $TMP/sidecar-data
limits:
  inventory: {BTC-PERP: 0.05, ETH-PERP: 0.5, SOL-PERP: 10, default: 1}
rule_files: ['$REPO/rules/*.yml']
evaluation_interval: 1s
alerting_file: alerting.yml
alertmanagers:
  - static_configs: [{targets: ['127.0.0.1:$AM']}]
reconcile: {interval: 10s}
accounts:
  - name: demo
    api_key: e2e
    markets: [BTC-PERP, ETH-PERP]
    open_only: true
    interval_ms: 250
    depth: 25
EOF
start sidecar "$BIN" run --config "$TMP/sentinel.yml"

cat >"$TMP/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ['$REPO/rules/*.yml']
alerting:
  alertmanagers: [{static_configs: [{targets: ['127.0.0.1:$AM']}]}]
scrape_configs:
  - job_name: ocx-sentinel
    static_configs: [{targets: ['127.0.0.1:$SIDE']}]
EOF
start prometheus prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PROM"

wait_for 30 "Alertmanager ready (127.0.0.1:$AM/-/ready)" get "http://127.0.0.1:$AM/-/ready"
wait_for 30 "the sidecar ready (127.0.0.1:$SIDE/-/ready)" get "http://127.0.0.1:$SIDE/-/ready"
wait_for 30 "the demo ready (127.0.0.1:$DEMO/-/ready)" get "http://127.0.0.1:$DEMO/-/ready"
wait_for 30 "Prometheus ready (127.0.0.1:$PROM/-/ready)" get "http://127.0.0.1:$PROM/-/ready"
wait_for 30 "Prometheus scraping the sidecar (up == 1)" \
  sh -c "curl -fsS 'http://127.0.0.1:$PROM/api/v1/query?query=up%3D%3D1' | grep -q '\"value\"'"
wait_for 30 "the recorder listening on 127.0.0.1:$HOOK" \
  "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $HOOK), 1)"
echo "simulator :$SIM  sidecar :$SIDE  demo :$DEMO  prometheus :$PROM  alertmanager :$AM  webhooks :$HOOK"

RESULTS=()
ok() {
  RESULTS+=("ok   $*")
  echo "ok: $*"
}

step "promtool check metrics on /metrics (the sidecar and the demo)"
for target in "sidecar:$SIDE" "demo:$DEMO"; do
  name=${target%%:*}
  get "http://127.0.0.1:${target#*:}/metrics" >"$TMP/$name.metrics"
  [ -s "$TMP/$name.metrics" ] || fail "the $name's /metrics is empty"
  if ! lint=$(promtool check metrics <"$TMP/$name.metrics" 2>&1) || [ -n "$lint" ]; then
    fail "promtool check metrics on the $name's /metrics reported: $lint"
  fi
done
ok "promtool check metrics: nothing reported (sidecar, demo)"

step "rules: promtool check/test and ocx-sentinel test on the same files"
promtool check rules rules/*.yml || fail "promtool check rules rules/*.yml"
promtool test rules rules/tests/*.yml || fail "promtool test rules rules/tests/*.yml"
"$BIN" test rules/tests/*.yml || fail "ocx-sentinel test rules/tests/*.yml"
ok "promtool check rules, promtool test rules and ocx-sentinel test pass (rules/, rules/tests/)"

step "amtool check-config"
amtool check-config deploy/alertmanager/alertmanager.yml \
  || fail "amtool check-config deploy/alertmanager/alertmanager.yml"
amtool check-config "$TMP/alerting.yml" "$TMP/alertmanager.yml" >/dev/null \
  || fail "amtool check-config on the script's own routing files"
ok "amtool check-config deploy/alertmanager/alertmanager.yml"

step "the scripted breach: SOL-PERP jumps to 20 contracts (limit 10) ${BREACH_AFTER}s after the simulator's start"
left=$((SIM_START + BREACH_AFTER + 30 - $(date +%s)))
((left > 0)) || fail "the checks before the breach took longer than the breach's start; raise E2E_BREACH_AFTER"
BREACH=$("$PYTHON" "$HELPER" next-breach "$TMP/records.jsonl" 0 "$left") \
  || fail "the simulator's SOL-PERP breach was not seen on the user stream"
read -r T0 TR <<<"$BREACH"
TA=$("$PYTHON" "$HELPER" wait-notify "$TMP/records.jsonl" /sidecar OcxInventoryLimitBreached SOL-PERP "$T0" 20) \
  || fail "the sidecar's webhook receiver got no firing OcxInventoryLimitBreached{market=SOL-PERP}"
TB=$("$PYTHON" "$HELPER" wait-notify "$TMP/records.jsonl" /prometheus OcxInventoryLimitBreached SOL-PERP "$T0" 30) \
  || fail "Prometheus + Alertmanager's webhook got no firing OcxInventoryLimitBreached{market=SOL-PERP}"
TC=$("$PYTHON" "$HELPER" wait-notify "$TMP/records.jsonl" /forwarded OcxInventoryLimitBreached SOL-PERP "$T0" 30) \
  || fail "Alertmanager sent no webhook for the alert the sidecar's forwarder (alertmanagers:) posted"
ok "the breach reached the webhooks of the sidecar, of Prometheus + Alertmanager, and of the sidecar's alert forwarded to Alertmanager"

firing_in() { # URL JQ-free check: a firing OcxInventoryLimitBreached on SOL-PERP in a v1 alerts answer
  get "$1" | "$PYTHON" -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
sys.exit(0 if any(a["labels"].get("alertname") == "OcxInventoryLimitBreached"
                  and a["labels"].get("market") == "SOL-PERP" and a["state"] == "firing"
                  for a in alerts) else 1)'
}
firing_in "http://127.0.0.1:$SIDE/api/v1/alerts" || fail "the sidecar's /api/v1/alerts shows no firing OcxInventoryLimitBreached{market=SOL-PERP}"
firing_in "http://127.0.0.1:$PROM/api/v1/alerts" || fail "Prometheus's /api/v1/alerts shows no firing OcxInventoryLimitBreached{market=SOL-PERP}"
ok "OcxInventoryLimitBreached{market=SOL-PERP} fires in the sidecar and in Prometheus (same rules/)"
get "http://127.0.0.1:$AM/api/v2/alerts?filter=alertname%3D%22OcxInventoryLimitBreached%22&filter=market%3D%22SOL-PERP%22" \
  | "$PYTHON" -c '
import json, sys
alerts = json.load(sys.stdin)
ours = [a for a in alerts if "job" not in a["labels"] and a["status"]["state"] == "active"]
theirs = [a for a in alerts if a["labels"].get("job") == "ocx-sentinel"]
sys.exit(0 if ours and theirs else 1)' \
  || fail "Alertmanager's /api/v2/alerts lacks the active alert from the sidecar (no job label) or from Prometheus"
ok "Alertmanager's /api/v2/alerts holds the sidecar's alert (and Prometheus's)"

"$PYTHON" - "$T0" "$TR" "$TA" "$TB" "$TC" "$ART/measurement.txt" <<'EOF'
import os, sys
t0, tr, ta, tb, tc = map(float, sys.argv[1:6])
ms = lambda t, since: f"{(t - since) * 1000:.0f} ms"
load = os.getloadavg()[0]
table = f"""| same breach, one run | breaching fill → firing webhook received | its delta on the wire → firing webhook received |
|---|---|---|
| (a) the sidecar's own rules and notifier (`group_wait: 0s`) | {ms(ta, t0)} | {ms(ta, tr)} |
| (b) Prometheus (`scrape_interval: 1s`, `evaluation_interval: 1s`) + Alertmanager (`group_wait: 0s`) | {ms(tb, t0)} | {ms(tb, tr)} |
| ratio b / a | {(tb - t0) / (ta - t0):.1f}x | {(tb - tr) / (ta - tr):.1f}x |
| (c) the sidecar's alert forwarded (`alertmanagers:`) through that Alertmanager | {ms(tc, t0)} | {ms(tc, tr)} |

The first column includes the wait for the stream's next 250 ms batch (the same for every
path); the second starts when the delta reached a client (the recorder's connection, flushed on
the same instant as the sidecar's).

{os.cpu_count()} cores, load average {load:.2f} (1 min) at the end; debug build of the sidecar.
"""
print(table)
with open(sys.argv[6], "w") as f:
    f.write(table)
EOF

step "the status page in headless Chromium"
# One line per firing alert: the row the status page shows for it (name, labels, state).
alerts_firing() {
  get "http://127.0.0.1:$SIDE/api/v1/alerts" | "$PYTHON" -c '
import html, json, sys
rows = set()
for a in json.load(sys.stdin)["data"]["alerts"]:
    if a["state"] == "firing":
        labels = ", ".join("%s=\"%s\"" % kv for kv in sorted(a["labels"].items()) if kv[0] != "alertname")
        name = a["labels"]["alertname"]
        rows.add("<td>%s</td><td>%s</td><td>firing</td>" % (html.escape(name, quote=False), html.escape(labels, quote=False)))
print("\n".join(sorted(rows)))'
}
streams() {
  get "http://127.0.0.1:$SIDE/metrics" | "$PYTHON" -c '
import re, sys
for line in sys.stdin:
    if line.startswith("ocx_stream_up{"):
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", line.split("}")[0]))
        print("/".join(x for x in (labels["account"], labels["stream"], labels.get("market")) if x))'
}
streams >"$TMP/streams.txt"
[ -s "$TMP/streams.txt" ] || fail "the sidecar's /metrics has no ocx_stream_up series"
alerts_firing >"$TMP/firing-before.txt"
chrome() {
  timeout 90 chromium --headless=new --disable-gpu --no-sandbox --no-first-run \
    --user-data-dir="$TMP/chromium" --enable-logging=stderr --v=0 "$@"
}
chrome --dump-dom "http://127.0.0.1:$SIDE/" >"$TMP/status.html" 2>"$TMP/chromium-dom.log" \
  || fail "Chromium could not load the status page (log: $(tail -5 "$TMP/chromium-dom.log"))"
chrome --screenshot="$ART/status-page.png" --window-size=1280,1400 "http://127.0.0.1:$SIDE/" \
  >/dev/null 2>"$TMP/chromium-shot.log" || fail "Chromium could not screenshot the status page"
[ -s "$ART/status-page.png" ] || fail "Chromium wrote no screenshot"
alerts_firing >"$TMP/firing-after.txt"
LOGS+=("$TMP/chromium-dom.log" "$TMP/chromium-shot.log")
# The page runs no script: any console message at all (Chromium's log does not say its level) is
# a failure, as is an uncaught error.
if grep -h ':CONSOLE' "$TMP/chromium-dom.log" "$TMP/chromium-shot.log"; then
  fail "the status page logged to the browser console (above)"
fi
missing=()
while read -r s; do grep -qF "<td>$s</td>" "$TMP/status.html" || missing+=("stream $s"); done <"$TMP/streams.txt"
# Alerts firing both before and after the page was read must be on it.
while read -r a; do
  [ -n "$a" ] || continue
  grep -qF "$a" "$TMP/status.html" || missing+=("firing alert row $a")
done < <(LC_ALL=C comm -12 "$TMP/firing-before.txt" "$TMP/firing-after.txt")
grep -qF '<td>OcxInventoryLimitBreached</td><td>account="demo", market="SOL-PERP", severity="page"</td><td>firing</td>' \
  "$TMP/status.html" || missing+=("firing alert OcxInventoryLimitBreached{market=SOL-PERP}")
((${#missing[@]} == 0)) || fail "the status page (as Chromium rendered it) does not show: ${missing[*]}"
cp "$TMP/status.html" "$ART/status-page.html"
ok "status page: no console messages; shows $(wc -l <"$TMP/streams.txt") streams and $(LC_ALL=C comm -12 "$TMP/firing-before.txt" "$TMP/firing-after.txt" | grep -c . || true) firing alerts; screenshot $ART/status-page.png"

step "every dashboard panel's queries in Prometheus (after $(($(date +%s) - SIM_START))s of the stack)"
if ! "$PYTHON" "$HELPER" dashboards "http://127.0.0.1:$PROM" dashboards/may-be-empty.txt dashboards/*.json \
  | tee "$ART/dashboards.txt"; then
  fail "dashboard queries (above): a query failed or a panel not in dashboards/may-be-empty.txt has no data"
fi
ok "every dashboard query parses in Prometheus; every panel not in dashboards/may-be-empty.txt has data"

step "summary"
printf '%s\n' "${RESULTS[@]}" | tee "$ART/summary.txt"
echo "ok   covered by cargo test: dashboards JSON + catalogue (tests/dashboards.rs), deploy files vs binary (tests/deploy_files.rs), web config with a real Prometheus (tests/web_config.rs)" \
  | tee -a "$ART/summary.txt"
cat "$ART/measurement.txt"
echo "E2E: PASSED (artefacts in $ART)"
