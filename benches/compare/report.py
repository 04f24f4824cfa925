#!/usr/bin/env python3
"""Turns the JSON reports of benches/compare/run.sh into a section of BENCHMARKS.md.

    python3 benches/compare/report.py RESULTS_DIR [--write BENCHMARKS.md]

Repeated runs (NAME.1.json, NAME.2.json...) give their median. The section replaces
the text between the compare markers of BENCHMARKS.md, or is appended.
"""
import json
import statistics
import sys
from pathlib import Path

PEERS = ["wshub", "tokio-tungstenite", "ws", "socketio", "socketioxide"]
TITLES = {
    "wshub": "wshub",
    "tokio-tungstenite": "tokio-tungstenite",
    "ws": "Node `ws`",
    "socketio": "Socket.IO 4.8",
    "socketioxide": "socketioxide 0.18",
}
BEGIN = "<!-- compare:begin (benches/compare/run.sh writes this section) -->"
END = "<!-- compare:end -->"


def load(out, peer, name):
    """The reports of PEER for NAME (one, or every repetition)."""
    files = sorted(out.glob(f"{peer}.{name}.*.json")) or sorted(out.glob(f"{peer}.{name}.json"))
    reports = []
    for f in files:
        try:
            reports.append(json.loads(f.read_text()))
        except (json.JSONDecodeError, OSError):
            pass
    return reports


def median(reports, get):
    values = []
    for r in reports:
        try:
            v = get(r)
        except (KeyError, TypeError):
            continue
        if v is not None:
            values.append(v)
    return statistics.median(values) if values else None


def fmt(v, digits=2, unit=""):
    if v is None:
        return "n/a"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M{unit}"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f} k{unit}"
    return f"{v:.{digits}f}{unit}"


def metrics(out, peer):
    """Every figure of the table for PEER (None where it did not run)."""
    m = {}
    burst = load(out, peer, "burst")
    m["burst"] = median(burst, lambda r: r["delivered_per_s"])
    m["burst_pct"] = median(burst, lambda r: 100 * r["delivered_ratio"])
    m["burst_n"] = len(burst)
    m["burst_cpu"] = median(burst, lambda r: r["details"]["server_cpu_per_publish_ms"])
    m["burst_gen"] = median(burst, lambda r: r["generator_cpu_pct"])
    paced = load(out, peer, "paced")
    m["paced_p50"] = median(paced, lambda r: r["latency"]["p50_us"] / 1000)
    m["paced_p99"] = median(paced, lambda r: r["latency"]["p99_us"] / 1000)
    m["paced_max"] = median(paced, lambda r: r["latency"]["max_us"] / 1000)
    m["paced_cpu"] = median(paced, lambda r: r["details"]["server_cpu_per_publish_ms"])
    m["paced_pct"] = median(paced, lambda r: 100 * r["delivered_ratio"])
    m["paced_n"] = len(paced)
    idle = load(out, peer, "idle")
    m["idle_rss"] = median(idle, lambda r: r["details"]["server_rss_per_conn_kib"])
    m["idle_held"] = median(idle, lambda r: r["details"]["held"])
    for key, name in [("c_paced", "c-paced"), ("d_paced", "d-paced")]:
        rs = load(out, peer, name)
        m[key] = median(rs, lambda r: r["details"]["server_cpu_per_publish_ms"])
        m[key + "_pct"] = median(rs, lambda r: 100 * r["delivered_ratio"])
    for key, name in [("c_burst", "c-burst"), ("d_burst", "d-burst")]:
        rs = load(out, peer, name)
        m[key] = median(rs, lambda r: r["delivered_per_s"])
        m[key + "_pct"] = median(rs, lambda r: 100 * r["delivered_ratio"])
        m[key + "_cpu"] = median(rs, lambda r: r["details"]["server_cpu_per_publish_ms"])
    d = load(out, peer, "d-burst") + load(out, peer, "d-paced")
    m["d_compressed"] = median(d, lambda r: r["details"]["compressed_subscribers"])
    churn = load(out, peer, "churn")
    m["churn"] = median(churn, lambda r: r["details"]["connects_per_s"])
    m["churn_failed"] = median(churn, lambda r: r["connect_failed"])
    scale = load(out, peer, "scale")
    m["scale_held"] = median(scale, lambda r: r["details"]["held"])
    m["scale_join_s"] = median(scale, lambda r: r["connect_s"])
    m["scale_rss"] = median(scale, lambda r: r["details"]["server_rss_joined_kib"] / 1024)
    m["scale_rss_per"] = median(scale, lambda r: r["details"]["server_rss_per_conn_kib"])
    return m


def section(out):
    peers = [p for p in PEERS if any(out.glob(f"{p}.*.json"))]
    ms = {p: metrics(out, p) for p in peers}
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").exists() else ""
    commands = (out / "commands.txt").read_text() if (out / "commands.txt").exists() else ""
    reps = max((ms[p]["burst_n"] for p in peers), default=0)

    def row(label, key, digits=2, unit="", pct=None):
        cells = []
        for p in peers:
            v = ms[p].get(key)
            cell = fmt(v, digits, unit)
            if pct and ms[p].get(pct) is not None and v is not None:
                cell += f" ({ms[p][pct]:.1f}%)"
            cells.append(cell)
        return f"| {label} | " + " | ".join(cells) + " |"

    def ratio_row(label, key, higher_is_better):
        base = ms.get("wshub", {}).get(key)
        cells = []
        for p in peers:
            v = ms[p].get(key)
            if p == "wshub" or base is None or v is None or v == 0 or base == 0:
                cells.append("" if p == "wshub" else "n/a")
            else:
                cells.append(f"{(base / v if higher_is_better else base / v):.2f}x")
        return f"| {label} | " + " | ".join(cells) + " |"

    head = "| scenario | " + " | ".join(TITLES[p] for p in peers) + " |"
    sep = "| --- |" + " --- |" * len(peers)
    lines = [
        BEGIN,
        "## Side by side: wshub, tokio-tungstenite, Node `ws`, Socket.IO, socketioxide",
        "",
        "`bash benches/compare/run.sh` (issue 12): every peer under the same generator",
        "(`wshub-bench`), each server pinned to core "
        "0 and the generator to core 1 (`taskset`), a fresh server process per",
        "scenario. Server CPU is `utime + stime` from `/proc/PID/stat` between the",
        "first publish and the last delivery (or the end of the drain); RSS is `VmRSS`.",
        f"Burst, paced and compression rows are medians of {reps} runs; the others one run.",
        "Messages are 64 bytes unless stated; 1.5 KiB messages are JSON of random words",
        "(they compress about 3x, as chat text does). Each peer relays every message to",
        "every client, the sender included. The generator's own CPU is in each JSON",
        "report (`generator_cpu_pct`): near 100 the generator, not the server, set the",
        "pace, and the server CPU rows say more than the deliveries/s ones.",
        "",
        head,
        sep,
        row("1. burst 2,000 x 1,000: deliveries/s (delivered %)", "burst", 0, "/s", "burst_pct"),
        row("1. burst: server CPU per publish, ms", "burst_cpu", 3),
        row("1. burst: generator CPU, % of its core", "burst_gen", 0),
        row("2. paced 100/s: p50 latency, ms", "paced_p50"),
        row("2. paced 100/s: p99 latency, ms", "paced_p99"),
        row("2. paced 100/s: max latency, ms", "paced_max"),
        row("2. paced 100/s: server CPU per publish, ms (delivered %)", "paced_cpu", 2, "", "paced_pct"),
        row("3. idle 10,000 (rooms of 100): server RSS per connection, KiB", "idle_rss", 2),
        row("4. 1.5 KiB, 20/s: server CPU per publish, ms", "c_paced"),
        row("4. same, permessage-deflate: server CPU per publish, ms", "d_paced"),
        row("4. 1.5 KiB burst 500: deliveries/s (delivered %)", "c_burst", 0, "/s", "c_burst_pct"),
        row("4. same, permessage-deflate: deliveries/s (delivered %)", "d_burst", 0, "/s", "d_burst_pct"),
        row("4. 1.5 KiB burst 500: server CPU per publish, ms", "c_burst_cpu"),
        row("4. same, permessage-deflate: server CPU per publish, ms", "d_burst_cpu"),
        row("4. subscribers that negotiated deflate", "d_compressed", 0),
        row("5. churn, JWT: connect + join + close per s", "churn", 0, "/s"),
        row("6. scale 19,000 (rooms of 100): connections held", "scale_held", 0),
        row("6. scale 19,000: join storm, s", "scale_join_s"),
        row("6. scale 19,000: server RSS, MiB", "scale_rss", 0),
        "",
        "wshub against each peer (from the medians above; for deliveries/s and churn",
        "above 1 means wshub is faster; for latency, CPU and RSS below 1 means wshub",
        "uses less):",
        "",
        head,
        sep,
        ratio_row("burst deliveries/s", "burst", True),
        ratio_row("burst server CPU per publish", "burst_cpu", False),
        ratio_row("paced p99 latency", "paced_p99", False),
        ratio_row("paced server CPU per publish", "paced_cpu", False),
        ratio_row("idle RSS per connection", "idle_rss", False),
        ratio_row("1.5 KiB 20/s server CPU per publish", "c_paced", False),
        ratio_row("same with deflate", "d_paced", False),
        ratio_row("1.5 KiB burst deliveries/s", "c_burst", True),
        ratio_row("1.5 KiB burst server CPU per publish", "c_burst_cpu", False),
        ratio_row("churn", "churn", True),
        "",
        "n/a: the peer cannot run it (tokio-tungstenite and socketioxide have no",
        "permessage-deflate), or the run failed (see the JSON reports).",
        "",
        "Machine:",
        "",
        "```text",
        machine.rstrip(),
        "```",
        "",
        "Commands (the generator; servers as in `benches/compare/run.sh`):",
        "",
        "```text",
        "\n".join(sorted(set(commands.splitlines()))),
        "```",
        END,
    ]
    return "\n".join(lines) + "\n"


def main():
    out = Path(sys.argv[1])
    text = section(out)
    if len(sys.argv) > 3 and sys.argv[2] == "--write":
        path = Path(sys.argv[3])
        doc = path.read_text()
        if BEGIN in doc and END in doc:
            before = doc[: doc.index(BEGIN)]
            after = doc[doc.index(END) + len(END) :].lstrip("\n")
            doc = before + text + ("\n" + after if after else "")
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
        path.write_text(doc)
        print(f"wrote {path}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
