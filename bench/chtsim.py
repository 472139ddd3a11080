"""CHT simulator /api/sms timings, the way CHT's own performance test measures the real thing
(tests/performance/api/controllers/sms-gateway.perf.js; its limit 5 s, its stated aim 0.5 s):

1. one POST /api/sms with 100 incoming messages (`test-message-i` from `+447890123<i>`), with
   the demo forms configured so each is parsed as CHT would;
2. 100 outgoing messages seeded, then one POST /api/sms with 100 status updates cycling
   PENDING, SENT, DELIVERED, FAILED (with a reason).

The simulator runs under uvicorn on 127.0.0.1 in a thread; each figure is the wall time of the
HTTP round trip, best and median of `--runs` runs (fresh simulator each). Prints JSON.

    python bench/chtsim.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import httpx

from smsbridge.chtsim import ChtSim, running_chtsim
from smsbridge.chtsim.demo_data import GATEWAY_USER

HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
STATUSES = ("PENDING", "SENT", "DELIVERED", "FAILED")
TARGET_SECONDS = 0.5


def _incoming() -> list[dict[str, Any]]:
    texts = ("P 12 Jane Doe", "V 123 2", "hello nurse", "1!P!10#Mary")
    return [
        {
            "id": f"test-message-{i}",
            "from": f"+447890123{i:03d}",
            "content": texts[i % 4],
            "sms_sent": 1511179010577,
            "sms_received": 1511189010577,
        }
        for i in range(100)
    ]


def _one_run() -> tuple[float, float]:
    sim = ChtSim()
    sim.install_demo()
    with (
        running_chtsim(sim) as url,
        httpx.Client(base_url=url, auth=GATEWAY_USER, headers=HEADERS) as http,
    ):
        http.get("/api/sms")  # warm the connection
        body = json.dumps({"messages": _incoming()})
        started = time.perf_counter()
        answer = http.post("/api/sms", content=body)
        incoming = time.perf_counter() - started
        assert answer.status_code == 200 and len(sim.records()) == 100, answer.text

        settings = dict(sim.state.settings)
        settings["sms"] = {"outgoing_service": "rapidpro"}  # don't re-offer the seeded ones
        sim.set_settings(settings)
        ids = [sim.add_outgoing("+32049832049", f"message {i}", state=None) for i in range(100)]
        updates = [
            {
                "id": mid,
                "status": STATUSES[i % 4],
                **({"reason": f"excuse #{i}"} if STATUSES[i % 4] == "FAILED" else {}),
            }
            for i, mid in enumerate(ids)
        ]
        body = json.dumps({"updates": updates})
        started = time.perf_counter()
        answer = http.post("/api/sms", content=body)
        statuses = time.perf_counter() - started
        assert answer.json() == {"messages": []}
        assert all(len(sim.states(mid)) == 1 for mid in ids)
    return incoming, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [_one_run() for _ in range(args.runs)]
    incoming = [r[0] for r in runs]
    statuses = [r[1] for r in runs]
    print(
        json.dumps(
            {
                "runs": args.runs,
                "incoming_100": {
                    "best_s": round(min(incoming), 4),
                    "median_s": round(statistics.median(incoming), 4),
                },
                "status_updates_100": {
                    "best_s": round(min(statuses), 4),
                    "median_s": round(statistics.median(statuses), 4),
                },
                "target_s": TARGET_SECONDS,
                "ok": max(incoming) < TARGET_SECONDS and max(statuses) < TARGET_SECONDS,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
