#!/usr/bin/env python3
"""Many visitors at once against `harbormaster serve` (bench/web.sh, part 2).

    visitors.py SERVER_IP:PORT TRUTH_FILE FIRST_VISITOR_IP COUNT [--poll SECONDS] [--timeout SECONDS]

Runs inside the target namespace. For each of COUNT consecutive visitor
addresses (FIRST_VISITOR_IP, FIRST+1, ...), all at once on their own thread:
GET / (the consent form's token), POST /scan kind=service, then poll
GET /api/scans/{id} until the scan is no longer running. Every connection is
bound to that visitor's address, so the server sees and probes exactly it.
Then every visitor's results are checked against TRUTH_FILE (`port state` per
line): all ports 0-1055 present once, each state as expected, and the scan's
target equal to the visitor's own address.

Prints one JSON object on stdout: wall time, per-visitor times, error counts.
Python 3 standard library only; every loop is bounded in count and time.
"""

import http.client
import ipaddress
import json
import re
import statistics
import sys
import threading
import time
import urllib.parse

SERVICE_PORTS = range(0, 1056)
TOKEN_RE = re.compile(r'name="token" value="([0-9a-f]{64})"')


def request(ip, server, port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection(server, port, timeout=timeout, source_address=(ip, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("Location"), data
    finally:
        conn.close()


def visit(ip, server, port, poll, deadline, start_barrier, out):
    rec = {"ip": ip, "error": None}
    out[ip] = rec
    start_barrier.wait()
    t0 = time.monotonic()
    rec["t0"] = t0
    try:
        status, _, body = request(ip, server, port, "GET", "/")
        m = TOKEN_RE.search(body.decode("utf-8", "replace"))
        if status != 200 or not m:
            raise RuntimeError(f"GET / gave {status} without a token")
        form = urllib.parse.urlencode({"token": m.group(1), "kind": "service"})
        status, location, body = request(
            ip, server, port, "POST", "/scan", body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        if status not in (302, 303) or not location or not location.startswith("/scan/"):
            text = re.sub(r"<[^>]*>", " ", body.decode("utf-8", "replace"))
            raise RuntimeError(f"POST /scan gave {status}: {' '.join(text.split())[:300]}")
        scan_id = location.rsplit("/", 1)[1]
        rec["id"] = scan_id
        rec["started"] = time.monotonic() - t0
        polls = 0
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"still running after the time limit ({polls} polls)")
            status, _, body = request(ip, server, port, "GET", f"/api/scans/{scan_id}")
            polls += 1
            if status != 200:
                raise RuntimeError(f"GET /api/scans/{scan_id} gave {status}")
            doc = json.loads(body)
            if doc["scan"]["status"] != "running":
                break
            time.sleep(poll)
        rec["elapsed"] = time.monotonic() - t0
        rec["polls"] = polls
        rec["doc"] = doc
    except Exception as e:  # noqa: BLE001 - every failure is reported, none hidden
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["elapsed"] = time.monotonic() - t0


def main():
    args = sys.argv[1:]
    poll, timeout = 0.25, 300.0
    if "--poll" in args:
        i = args.index("--poll")
        poll = float(args[i + 1])
        del args[i:i + 2]
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 4:
        sys.exit(__doc__)
    server, port = args[0].rsplit(":", 1)
    port = int(port)
    truth = {}
    with open(args[1]) as f:
        for line in f:
            p, state = line.split()
            truth[int(p)] = state
    first = ipaddress.IPv4Address(args[2])
    count = int(args[3])
    if not 1 <= count <= 250:
        sys.exit("COUNT must be 1-250")
    ips = [str(first + i) for i in range(count)]

    out = {}
    barrier = threading.Barrier(count + 1)
    wall0 = None
    deadline = time.monotonic() + timeout
    threads = [
        threading.Thread(target=visit, args=(ip, server, port, poll, deadline, barrier, out), daemon=True)
        for ip in ips
    ]
    for t in threads:
        t.start()
    barrier.wait()
    wall0 = time.monotonic()
    for t in threads:
        t.join(timeout=max(0.0, deadline + 60 - time.monotonic()))
    wall = time.monotonic() - wall0

    errors, wrong_target, wrong_ports, missing_ports, extra_ports = [], 0, 0, 0, 0
    wrong_examples, statuses, elapsed = [], {}, []
    states = {"open": 0, "closed": 0, "filtered": 0, "stealth": 0}
    probes_sent = 0
    for ip in ips:
        rec = out.get(ip, {"error": "thread did not finish"})
        if rec.get("error") or "doc" not in rec:
            errors.append(f"{ip}: {rec.get('error', 'no result')}")
            continue
        elapsed.append(rec["elapsed"])
        scan = rec["doc"]["scan"]
        statuses[scan["status"]] = statuses.get(scan["status"], 0) + 1
        if scan.get("target") != ip:
            wrong_target += 1
            errors.append(f"{ip}: scan target is {scan.get('target')!r}")
        seen = {}
        for r in scan["results"]:
            probes_sent += r.get("tries", 0)
            if r["port"] in seen or r["port"] not in SERVICE_PORTS:
                extra_ports += 1
            seen[r["port"]] = r["state"]
        for p in SERVICE_PORTS:
            got = seen.get(p)
            if got is None:
                missing_ports += 1
            elif got != truth[p]:
                wrong_ports += 1
                if len(wrong_examples) < 10:
                    wrong_examples.append(f"{ip} port {p}: {got}, expected {truth[p]}")
            else:
                states[got] += 1
    report = {
        "visitors": count,
        "completed": len(elapsed),
        "statuses": statuses,
        "wall_s": round(wall, 3),
        "per_visitor_s": {
            "min": round(min(elapsed), 3) if elapsed else None,
            "median": round(statistics.median(elapsed), 3) if elapsed else None,
            "max": round(max(elapsed), 3) if elapsed else None,
        },
        "poll_interval_s": poll,
        "port_results_checked": count * len(SERVICE_PORTS),
        "correct_by_state": states,
        "incorrect_port_results": wrong_ports,
        "missing_port_results": missing_ports,
        "extra_port_results": extra_ports,
        "wrong_target": wrong_target,
        "probes_sent": probes_sent,
        "errors": errors[:20],
        "error_count": len(errors),
        "wrong_examples": wrong_examples,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
