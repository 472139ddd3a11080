"""Reply latency: from a health worker's report reaching the bridge's webhook to CHT's automatic
reply delivered at the carrier (simulator), with default settings.

    python bench/replies.py [--reports 30] [--gap 1.5] [--sync-interval 30]

Runs `smsbridge serve` as a subprocess in its sandbox (built-in CHT simulator with its demo
deployment, generic carrier to the built-in carrier simulator), every setting at its default
unless given. Each report is `P 12 <a unique patient name>` from one of the demo health
workers, `--gap` seconds apart; its reply ("Thank you ..., <name> is registered ...") is found
in the CHT simulator's messages by the patient name, and the time until its state is
`delivered` is measured (same host clock, polled every 20 ms). Prints one JSON object with
p50/p90/p99/max in seconds. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from smsbridge.chtsim.demo_data import CHW_PHONES
from smsbridge.loopback import free_port, wait_for
from smsbridge.sandbox import DEMO_TOKEN


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=30)
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between reports")
    parser.add_argument("--sync-interval", help="SMSBRIDGE_SYNC_INTERVAL (default: its default)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per reply, seconds")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="smsbridge-replies-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBRIDGE_")}
    env["SMSBRIDGE_LOG_LEVEL"] = "WARNING"
    if args.sync_interval:
        env["SMSBRIDGE_SYNC_INTERVAL"] = args.sync_interval
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsbridge", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        first = wait_for(
            lambda: next((line for line in lines if "/_sim/records" in line), None),
            "serve to start",
        )
        cht = first.split("curl -s ", 1)[1].split("/_sim/records")[0]
        webhook = f"http://127.0.0.1:{port}/carriers/generic/{DEMO_TOKEN}/inbound"
        phones = list(CHW_PHONES.values())
        latencies: list[float] = []
        with httpx.Client(timeout=10) as http:
            for n in range(args.reports):
                name = f"Patient{n:04d}x"
                sent = time.monotonic()
                reply = http.post(
                    webhook, data={"from": phones[n % len(phones)], "text": f"P 12 {name}"}
                )
                reply.raise_for_status()

                def delivered(name: str = name) -> bool:
                    messages: list[dict[str, Any]] = http.get(f"{cht}/_sim/messages").json()
                    return any(
                        name in m.get("content", "") and m.get("state") == "delivered"
                        for m in messages
                    )

                wait_for(delivered, f"the reply to report {n}", timeout=args.timeout)
                latencies.append(time.monotonic() - sent)
                time.sleep(max(0.0, args.gap - (time.monotonic() - sent)))
    finally:
        proc.terminate()
        proc.wait(15)
    print(
        json.dumps(
            {
                "reports": len(latencies),
                "sync_interval": args.sync_interval or "default",
                "reply_p50_s": round(percentile(latencies, 50), 3),
                "reply_p90_s": round(percentile(latencies, 90), 3),
                "reply_p99_s": round(percentile(latencies, 99), 3),
                "reply_max_s": round(max(latencies), 3),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
