#!/usr/bin/env python3
"""Helpers for tests/e2e/run.sh (stdlib only).

  ports N                         print N free 127.0.0.1 TCP ports
  recorder PORT OUT SIM_URL MARKET LIMIT [QUERY]
                                  webhook receiver: every POST is one JSON line in OUT
                                  ({"kind": "webhook", "path", "t", "body"}); and a watcher on the
                                  simulator's user stream (with QUERY): every event that takes
                                  MARKET's |position| from <= LIMIT to > LIMIT is one line
                                  ({"kind": "breach", "t": createdAt of the market's fill in
                                  that event, "engineTs", "received", "quantity", "eventSeq"})
  wait-notify OUT PATH ALERT MARKET AFTER DEADLINE_S
                                  wait for a firing webhook to PATH carrying ALERT on MARKET that
                                  arrived after unix time AFTER; print its arrival time
  next-breach OUT AFTER DEADLINE_S
                                  wait for a breach recorded after unix time AFTER; print its
                                  time (the fill's createdAt) and when its delta was received
  dashboards PROM_URL MAY_BE_EMPTY FILE...
                                  run every panel query of the dashboards against Prometheus:
                                  each must parse, and return data unless its panel is listed
"""

import datetime
import glob
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def free_ports(n):
    socks, ports = [], []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


_lock = threading.Lock()


def _append(out, record):
    line = json.dumps(record)
    with _lock, open(out, "a") as f:
        f.write(line + "\n")
        f.flush()


def recorder(port, out, sim_url, market, limit, query=""):
    limit = float(limit)

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            t = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            _append(out, {"kind": "webhook", "path": self.path, "t": t, "body": parsed})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # The simulator's world is one for every client: this connection sees the same events, at
    # the same moment, as the sidecar's.
    qty = 0.0
    while True:
        try:
            req = urllib.request.Request(
                sim_url.rstrip("/") + "/perps/stream/user" + ("?" + query if query else ""),
                headers={"x-api-key": "e2e"}
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                for raw in resp:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if not line.startswith("data:"):
                        continue
                    t = time.time()
                    try:
                        ev = json.loads(line[5:])
                    except ValueError:
                        continue
                    payload = ev.get("payload") or {}
                    positions = payload.get("positions")
                    new = qty
                    if isinstance(positions, list):  # snapshot
                        new = 0.0
                        for p in positions:
                            if p.get("marketId") == market:
                                new = abs(float(p.get("quantity") or 0))
                    elif isinstance(positions, dict):  # delta
                        for p in positions.get("upserts") or []:
                            if p.get("marketId") == market:
                                new = abs(float(p.get("quantity") or 0))
                                if p.get("status") not in (None, "open"):
                                    new = 0.0
                        for rid in positions.get("removedIds") or []:
                            if market in str(rid):
                                new = 0.0
                    if qty <= limit < new:
                        _append(
                            out,
                            {
                                "kind": "breach",
                                # One clock starts at the world step that made the jump: the
                                # createdAt of the market's fill in this delta. The other at
                                # "received": the simulator flushes every connection with the
                                # same intervalMs on the same instants, so the sidecar's
                                # connection gets this delta when this one does.
                                "t": min(
                                    [
                                        _event_time(tr.get("createdAt"), t)
                                        for tr in payload.get("trades") or []
                                        if tr.get("marketId") == market
                                    ]
                                    or [_event_time(ev.get("engineTs"), t)]
                                ),
                                "engineTs": _event_time(ev.get("engineTs"), t),
                                "received": t,
                                "quantity": new,
                                "eventSeq": ev.get("eventSeq"),
                                "snapshot": isinstance(positions, list),
                            },
                        )
                    qty = new
        except Exception as e:  # reconnect: the run goes on
            print(f"recorder: stream: {e}", file=sys.stderr)
            time.sleep(0.5)


def _event_time(ts, default):
    if isinstance(ts, (int, float)):
        return ts / 1000.0
    if isinstance(ts, str):
        try:
            return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return default


def _records(out):
    try:
        with open(out) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_notify(out, path, alert, market, after, deadline_s):
    after, end = float(after), time.time() + float(deadline_s)
    while time.time() < end:
        for r in _records(out):
            if r["kind"] != "webhook" or r["path"] != path or r["t"] <= after:
                continue
            body = r["body"] if isinstance(r["body"], dict) else {}
            for a in body.get("alerts", []):
                labels = a.get("labels", {})
                if (
                    a.get("status") == "firing"
                    and labels.get("alertname") == alert
                    and labels.get("market") == market
                ):
                    print(f"{r['t']:.6f}")
                    return 0
        time.sleep(0.05)
    print(
        f"no firing {alert}{{market={market}}} webhook reached {path} within {deadline_s}s",
        file=sys.stderr,
    )
    return 1


def next_breach(out, after, deadline_s):
    after, end = float(after), time.time() + float(deadline_s)
    while time.time() < end:
        for r in _records(out):
            if r["kind"] == "breach" and not r.get("snapshot") and r["t"] > after:
                print(f"{r['t']:.6f} {r['received']:.6f}")
                return 0
        time.sleep(0.05)
    print(f"the simulator's stream showed no inventory breach within {deadline_s}s", file=sys.stderr)
    return 1


VARS = [
    (r"\$\{account(:\w+)?\}|\$account\b", ".*"),
    (r"\$\{market(:\w+)?\}|\$market\b", ".*"),
    (r"\$\{__rate_interval\}|\$__rate_interval\b", "1m"),
    (r"\$\{__interval\}|\$__interval\b", "15s"),
    (r"\$\{__range\}|\$__range\b", "5m"),
]


def substitute(expr):
    for pat, val in VARS:
        expr = re.sub(pat, val, expr)
    left = re.findall(r"\$\{?\w+", expr)
    return expr, left


def panels(d):
    for p in d.get("panels", []):
        yield p
        yield from panels(p)


def dashboards(prom, may_be_empty, files):
    allowed = {}
    with open(may_be_empty) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            head, sep, reason = line.partition(" -- ")
            file, _, title = head.partition(" ")
            if not sep or not reason.strip() or not title:
                print(f"{may_be_empty}: malformed line (want '<file> <title> -- <reason>'): {line}")
                return 1
            allowed[(file, title.strip())] = reason.strip()
    seen, failures, rows, empty_exprs = set(), [], [], []
    for path in files:
        name = os.path.basename(path)
        with open(path) as f:
            d = json.load(f)
        for p in panels(d):
            targets = [t for t in p.get("targets", []) if t.get("expr")]
            if not targets:
                continue
            title = p.get("title", "?")
            key = (name, title)
            series, errors, empty = 0, [], 0
            for t in targets:
                expr, left = substitute(t["expr"])
                if left:
                    errors.append(f"unsubstituted variable {left} in {t['expr']!r}")
                    continue
                url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                try:
                    with urllib.request.urlopen(url, timeout=10) as r:
                        res = json.load(r)
                except urllib.error.HTTPError as e:
                    res = json.load(e)
                if res.get("status") != "success":
                    errors.append(f"{expr!r}: {res.get('errorType')}: {res.get('error')}")
                    continue
                result = res["data"]["result"]
                n = len(result) if isinstance(result, list) else 1
                series += n
                if n == 0:
                    empty += 1
                    empty_exprs.append((name, title, t.get("refId", "?"), expr))
            if errors:
                verdict = "ERROR"
                failures.append(f"{name} / {title}: " + "; ".join(errors))
            elif not empty:
                verdict = f"{series} series"
                if key in allowed:
                    verdict += " (listed as may-be-empty)"
            elif key in allowed:
                verdict = f"{len(targets) - empty} of {len(targets)} with data, allowed: {allowed[key]}"
            else:
                verdict = f"EMPTY: {empty} of {len(targets)} queries returned nothing"
                failures.append(
                    f"{name} / {title}: {empty} of its queries returned no data, and the panel is "
                    f"not in {may_be_empty}: "
                    + "; ".join(e[3] for e in empty_exprs if e[:2] == (name, title))
                )
            seen.add(key)
            rows.append((name, title, len(targets), verdict))
    for key in allowed:
        if key not in seen:
            failures.append(f"{may_be_empty} lists {key[0]} / {key[1]}, which is no panel with queries")
    w = max(len(f"{r[0]} / {r[1]}") for r in rows)
    for name, title, n, verdict in rows:
        print(f"  {name + ' / ' + title:<{w}}  {n} quer{'y' if n == 1 else 'ies'}  {verdict}")
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "ports":
        free_ports(*args)
        return 0
    if cmd == "recorder":
        recorder(*args)
        return 0
    if cmd == "wait-notify":
        return wait_notify(*args)
    if cmd == "next-breach":
        return next_breach(*args)
    if cmd == "dashboards":
        return dashboards(args[0], args[1], args[2:] or sorted(glob.glob("dashboards/*.json")))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
