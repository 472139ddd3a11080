"""Outbound drain: N queued SMS (default 100,000) leave at each channel's configured rate.

Honest by construction:
- real time, not a simulated clock: the bridge's own send workers (the production loop of
  smsbridge/workers.py) claim, book rate slots, commit and call the carriers' send APIs over HTTP;
- the carriers are the carrier simulator in a SEPARATE process (so its CPU is not counted as the
  bridge's), which timestamps every SMS it accepts: the rates are measured on the carrier's side;
- each channel has its own rate (default 40, 30, 20 and 10 segments/s: 100 SMS/s in all, 100,000
  SMS in about 1,000 s) and gets messages in proportion, so all four drain side by side; a
  bridge too slow to keep up shows as a rate below target (raise `--scale` on a faster machine).

Figures (JSON): per channel the configured rate, the measured rate over the whole drain (first to
last SMS, the initial bucket burst included) and in steady state (after the first burst), and the
deviation; the bridge's CPU (user+system) ms per SMS; its peak RSS. Durable store as in
production (SQLite WAL, synchronous=FULL).

    python bench/outbound.py [--messages 100000] [--scale 1.0] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from smsbridge.loopback import free_port, wait_for

RATES = {"africastalking": 40.0, "twilio": 30.0, "vonage": 20.0, "generic": 10.0}
CHANNELS = tuple(RATES)


# -- the carrier process -------------------------------------------------------------------------


def serve_carriers(port: int) -> None:
    """Child process: the carrier simulator, plus /_stats with the send timestamps."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from smsbridge.carriersim import CarrierSim

    sim = CarrierSim()
    for name in CHANNELS:
        sim.configure(name, reports=False)

    async def stats(request: Request) -> JSONResponse:
        out: dict[str, Any] = {}
        for name in CHANNELS:
            out[name] = sorted(s.at for s in sim.sent_by(name))
        return JSONResponse(out)

    app = Starlette(routes=[Route("/_stats", stats), Mount("/", sim.app)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the bridge side -----------------------------------------------------------------------------


def rate_figures(stamps: list[float], rate: float) -> dict[str, Any]:
    n = len(stamps)
    if n < 2:
        return {"sent": n}
    whole = n / (stamps[-1] - stamps[0]) if stamps[-1] > stamps[0] else float("inf")
    burst = int(rate)  # the bucket starts full: one period's worth leaves at once
    steady = (n - burst - 1) / (stamps[-1] - stamps[burst]) if n > burst + 1 else whole
    return {
        "sent": n,
        "configured_per_s": rate,
        "measured_per_s": round(whole, 2),
        "steady_per_s": round(steady, 2),
        "deviation_pct": round(100 * (whole - rate) / rate, 2),
        "steady_deviation_pct": round(100 * (steady - rate) / rate, 2),
        "seconds": round(stamps[-1] - stamps[0], 2),
    }


async def drain(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    from smsbridge.carriers import load_settings
    from smsbridge.carriersim import bridge_env
    from smsbridge.outbound import messages as outgoing
    from smsbridge.service import build_service
    from smsbridge.store import Store
    from smsbridge.workers import Wakeup, WorkerPool

    prefixes = {name: f"+2547{i}" for i, name in enumerate(CHANNELS)}
    env = {
        "SMSBRIDGE_DATABASE": str(workdir / "bench.db"),
        "SMSBRIDGE_CARRIERS": ",".join(CHANNELS),
        "SMSBRIDGE_ROUTES": ";".join(f"{p}={n}" for n, p in prefixes.items()),
        "SMSBRIDGE_RATES": ",".join(f"{n}={rate * args.scale:g}" for n, rate in RATES.items()),
        **bridge_env(url),
    }
    settings = load_settings(env)
    store = Store(settings.database)
    # the production wiring; only its send workers run (no CHT: the SMS are queued below)
    service = build_service(settings, store, cht=None, clock=time.time, rng=random.Random(1))  # type: ignore[arg-type]

    # queue the messages as CHT would hand them over (one write job per CHT batch of 25)
    now = time.time()
    batch: list[dict[str, str]] = []
    # channels get messages in proportion to their rates (i mod 100 -> 40/30/20/10 shares)
    cut, bounds = 0.0, []
    for name, rate in RATES.items():
        cut += rate
        bounds.append((cut, name))
    total = cut
    for i in range(args.messages):
        channel = next(n for b, n in bounds if i % int(total) < b)
        batch.append(
            {
                "id": f"bench-{i}",
                "to": f"{prefixes[channel]}{i:07d}",
                "content": f"Reminder {i}: ANC visit tomorrow at the health centre.",
            }
        )
        if len(batch) == 25 or i == args.messages - 1:
            msgs = batch
            store.submit(lambda c, m=msgs: outgoing.store_cht_messages_in(c, m, now))
            batch = []
    store.write_sync(lambda c: None)  # all queued and committed

    workers = WorkerPool(time.time, idle=0.05)
    workers.claimers("outbound", service.outbound.run_once, Wakeup(), args.workers)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    workers.start()
    while True:
        await asyncio.sleep(0.5)
        left = store.query("SELECT COUNT(*) FROM tasks WHERE kind = 'send'")[0][0]
        if left == 0:
            break
    elapsed = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    await workers.stop()
    await service.stop()
    sent = store.query("SELECT COUNT(*) FROM outgoing WHERE state = 'sent'")[0][0]
    commits = store.batches
    store.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "elapsed_s": round(elapsed, 2),
        "sent_state": sent,
        "bridge_cpu_ms_per_sms": round(1000 * cpu / max(1, args.messages), 3),
        "bridge_cpu_s": round(cpu, 2),
        "commits": commits,
        "peak_rss_mb": round(usage1.ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every rate")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--serve-carriers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_carriers:
        serve_carriers(args.serve_carriers)
        return
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve-carriers", str(port)])
    url = f"http://127.0.0.1:{port}"

    def carriers_up() -> bool:
        try:
            return httpx.get(url + "/_stats", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(carriers_up, "the carrier simulator to start", timeout=20)
        with tempfile.TemporaryDirectory() as tmp:
            bridge = asyncio.run(drain(args, url, Path(tmp)))
        stamps = httpx.get(url + "/_stats", timeout=60).json()
    finally:
        child.terminate()
        child.wait(10)
    channels = {name: rate_figures(stamps[name], RATES[name] * args.scale) for name in CHANNELS}
    within = all(abs(c.get("deviation_pct", 100)) <= 5 for c in channels.values())
    print(
        json.dumps(
            {
                "messages": args.messages,
                "workers": args.workers,
                "cpus": os.cpu_count(),
                "channels": channels,
                "all_within_5_pct": within,
                "bridge": bridge,
                "rss_target_mb": 150,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
