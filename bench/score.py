#!/usr/bin/env python3
"""Scores a scanner's output against the test host's truth file.

usage: score.py TRUTH FORMAT OUTPUT [PORTS]
FORMAT: ndjson (harbormaster), nmap-xml, masscan-json, rustscan-grep
PORTS: the scanned range as LO-HI (default 0-65535).
Prints one JSON object: per-state correct/expected counts and misclassified ports.
Tools that only report open ports are scored on open ports only ("states": "open-only").
"""
import json, sys
import xml.etree.ElementTree as ET

truth_file, fmt, output = sys.argv[1:4]
lo, hi = map(int, (sys.argv[4] if len(sys.argv) > 4 else "0-65535").split("-"))
truth = {}
for line in open(truth_file):
    p, s = line.split()
    p = int(p)
    if lo <= p <= hi:
        truth[p] = s

def nmap_state(state, reason):
    if state == "filtered":
        return "stealth" if reason in ("no-response", "") else "filtered"
    return state

seen, open_only, stealth_tries = {}, False, []
if fmt == "ndjson":
    for line in open(output):
        if line.strip():
            r = json.loads(line)
            seen[r["port"]] = r["state"]
            if r["state"] == "stealth":
                stealth_tries.append(r["tries"])
elif fmt == "nmap-xml":
    root = ET.parse(output).getroot()
    host = root.find("host")
    explicit = {}
    extra_state, extra_reasons = None, []
    if host is not None:
        ports = host.find("ports")
        for port in ports.findall("port"):
            st = port.find("state")
            explicit[int(port.get("portid"))] = nmap_state(st.get("state"), st.get("reason", ""))
        for ex in ports.findall("extraports"):
            extra_state = ex.get("state")
            for er in ex.findall("extrareasons"):
                extra_reasons.append((extra_state, er.get("reason"), er.get("ports")))
    def expand(spec):
        out = set()
        for part in (spec or "").split(","):
            if "-" in part:
                a, b = part.split("-"); out.update(range(int(a), int(b) + 1))
            elif part:
                out.add(int(part))
        return out
    for state, reason, ports in extra_reasons:
        for p in expand(ports):
            seen[p] = nmap_state(state, reason)
    if extra_state and not any(ports for _, _, ports in extra_reasons):
        # Old nmap without per-reason port lists: every unlisted port has the extraports state.
        reason = extra_reasons[0][1] if len(extra_reasons) == 1 else ""
        for p in truth:
            seen.setdefault(p, nmap_state(extra_state, reason))
    seen.update(explicit)
elif fmt == "masscan-json":
    open_only = True
    text = open(output).read().strip()
    if text:
        text = text.rstrip().rstrip(",")
        if not text.startswith("["):
            text = "[" + text + "]"
        text = text.replace(",\n]", "\n]")
        for rec in json.loads(text):
            for p in rec.get("ports", []):
                if p.get("status") == "open":
                    seen[int(p["port"])] = "open"
elif fmt == "rustscan-grep":
    open_only = True
    for line in open(output):
        if "->" in line:
            inside = line.split("->", 1)[1].strip().strip("[]")
            for p in inside.split(","):
                if p.strip():
                    seen[int(p)] = "open"
else:
    sys.exit(f"unknown format {fmt}")

expected = {}
for s in truth.values():
    expected[s] = expected.get(s, 0) + 1
correct = {s: 0 for s in expected}
wrong = []
for p, s in truth.items():
    got = seen.get(p, "missing")
    if open_only:
        if s == "open" and got == "open":
            correct["open"] += 1
        elif (s == "open") != (got == "open"):
            wrong.append(f"{p}:{s}->{'open' if got == 'open' else 'not-open'}")
    elif got == s:
        correct[s] += 1
    else:
        wrong.append(f"{p}:{s}->{got}")
print(json.dumps({
    "states": "open-only" if open_only else "all",
    "correct": correct, "expected": expected,
    "misclassified": len(wrong), "examples": wrong[:8],
    "min_stealth_tries": min(stealth_tries) if stealth_tries else None,
}))
