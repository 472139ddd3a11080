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

`--unlimited` is the other benchmark: the whole send path end to end, on a channel with no rate
limit. Three processes on 127.0.0.1: the CHT simulator holding `--count` pending SMS (handed
out 25 per /api/sms exchange, as CHT does), a generic HTTP gateway (the carrier simulator)
answering each send after `--latency` s and posting its delivery report `--report-delay` s
later, and `smsbridge serve` (its real sync and send workers, SMSBRIDGE_SYNC_INTERVAL=1). Done
when CHT holds every SMS as delivered. Figures: SMS per second from the bridge's start to the
last delivered, the bridge process's own CPU ms per SMS (/proc; also without what it spent
starting, up to its first /healthz answer), its peak RSS (VmHWM), the CHT exchanges it made,
and the simulators' CPU (each must stay well below a core, or it, not the bridge, sets the pace).

    python bench/outbound.py --unlimited [--count 5000] [--concurrency N] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
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


# -- end to end, no rate limit (--unlimited) -----------------------------------------------------

GENERIC_TOKEN = "bench-webhook-token-0123456789"
REPORT_RETRY = 60.0  # seconds the gateway keeps posting a delivery report that got no 2xx


def serve_cht(port: int, count: int) -> None:
    """Child process: the CHT simulator (demo deployment) with `count` pending SMS, plus
    /_bench/states (how many SMS are in each state)."""
    from collections import Counter

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from smsbridge.chtsim import ChtSim

    sim = ChtSim()
    sim.install_demo()
    for i in range(count):
        sim.add_outgoing(f"+2547{i:08d}", f"Reminder {i}: ANC visit tomorrow at the health centre.")

    async def states(request: Request) -> JSONResponse:
        with sim.state.lock:  # no copies: this process's CPU is the simulator's, keep it low
            return JSONResponse(
                Counter(
                    str(task.get("state"))
                    for doc in sim.state.docs.values()
                    for task in doc.get("tasks") or []
                )
            )

    exchanges = [0]  # POST /api/sms requests: how well the bridge batches its state reports

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/sms":
            exchanges[0] += 1
        await sim.app(scope, receive, send)

    async def count(request: Request) -> JSONResponse:
        return JSONResponse({"exchanges": exchanges[0]})

    app = Starlette(
        routes=[
            Route("/_bench/states", states),
            Route("/_bench/exchanges", count),
            Mount("/", counted),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_gateway(port: int, latency: float, report_delay: float) -> None:
    """Child process: a generic HTTP gateway (the carrier simulator's `generic` API)."""
    import uvicorn

    from smsbridge.carriersim import CarrierSim

    sim = CarrierSim()
    # a report the bridge did not take (a connection refused under load) is posted again, as
    # real gateways retry their callbacks: else one lost report leaves the run unfinished
    sim.configure(
        "generic", latency=latency, report_delay=report_delay, report_retry_for=REPORT_RETRY
    )
    uvicorn.run(sim.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
    return out


def unlimited(args: argparse.Namespace) -> dict[str, Any]:
    from smsbridge.carriersim import bridge_env

    sys.path.insert(0, str(Path(__file__).parent))
    from inbound import cpu_seconds, stop, wait_http

    cht_port, gw_port, bridge_port = free_port(), free_port(), free_port()
    me = [sys.executable, __file__]
    gateway = ["--latency", str(args.latency), "--report-delay", str(args.report_delay)]
    children = [
        subprocess.Popen([*me, "--serve-cht", str(cht_port), "--count", str(args.count)]),
        subprocess.Popen([*me, "--serve-gateway", str(gw_port), *gateway]),
    ]
    try:
        wait_http(cht_port, "/_bench/states", timeout=60)
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                **bridge_env(f"http://127.0.0.1:{gw_port}"),
                "SMSBRIDGE_DATABASE": str(Path(tmp) / "bridge.db"),
                "SMSBRIDGE_CHT_URL": f"http://gateway:gateway-pass@127.0.0.1:{cht_port}",
                "SMSBRIDGE_CARRIERS": "generic",
                "SMSBRIDGE_GENERIC_WEBHOOK_TOKEN": GENERIC_TOKEN,
                "SMSBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{bridge_port}",
                "SMSBRIDGE_SYNC_INTERVAL": "1",
                "SMSBRIDGE_LOG_LEVEL": args.log_level,
            }
            if args.concurrency:
                env["SMSBRIDGE_SEND_CONCURRENCY"] = str(args.concurrency)
            address = ["--host", "127.0.0.1", "--port", str(bridge_port)]
            started = time.perf_counter()
            bridge = subprocess.Popen(
                [sys.executable, "-m", "smsbridge", "serve", *address],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(Path(tmp) / "bridge.log").open("wb"),
            )
            try:
                # the process's start (imports, app, first CHT exchange) is not per-SMS work
                wait_http(bridge_port, "/healthz", timeout=60)
                startup_cpu = cpu_seconds(bridge.pid)
                states: dict[str, int] = {}
                deadline = started + args.timeout
                while time.perf_counter() < deadline:
                    time.sleep(0.5)
                    states = httpx.get(
                        f"http://127.0.0.1:{cht_port}/_bench/states", timeout=30
                    ).json()
                    if states.get("delivered", 0) >= args.count:
                        break
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds(bridge.pid)
                exchanges = httpx.get(
                    f"http://127.0.0.1:{cht_port}/_bench/exchanges", timeout=30
                ).json()["exchanges"]
                memory = proc_status(bridge.pid)
                others = [cpu_seconds(child.pid) for child in children]
            finally:
                stop(bridge)
                if args.bridge_log:
                    shutil.copyfile(Path(tmp) / "bridge.log", args.bridge_log)
    finally:
        for child in children:
            child.terminate()
            child.wait(10)
    delivered = states.get("delivered", 0)
    return {
        "count": args.count,
        "delivered_in_cht": delivered,
        "states_in_cht": states,
        "send_concurrency": args.concurrency or "default",
        "gateway_latency_s": args.latency,
        "report_delay_s": args.report_delay,
        "elapsed_s": round(elapsed, 2),
        "sms_per_s": round(delivered / elapsed, 1),
        "bridge_cpu_s": round(cpu, 2),
        "bridge_cpu_ms_per_sms": round(cpu * 1000 / max(1, delivered), 3),
        "bridge_startup_cpu_s": round(startup_cpu, 2),
        "bridge_cpu_ms_per_sms_after_start": round(
            (cpu - startup_cpu) * 1000 / max(1, delivered), 3
        ),
        "peak_rss_mb": round(memory.get("VmHWM", 0) / 1024, 1),
        "cht_exchanges": exchanges,
        "chtsim_cpu_s": round(others[0], 2),
        "gateway_cpu_s": round(others[1], 2),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every rate")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--serve-carriers", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--unlimited", action="store_true", help="end to end, no rate limit (see the doc)"
    )
    parser.add_argument("--count", type=int, default=5000, help="--unlimited: SMS in CHT")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="--unlimited: SMSBRIDGE_SEND_CONCURRENCY"
    )
    parser.add_argument("--latency", type=float, default=0.3, help="--unlimited: send answer s")
    parser.add_argument(
        "--report-delay", type=float, default=0.2, help="--unlimited: delivery report after s"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="--unlimited: give up after")
    parser.add_argument("--log-level", default="INFO", help="--unlimited: the bridge's")
    parser.add_argument("--bridge-log", help="--unlimited: keep the bridge's log in this file")
    parser.add_argument("--serve-cht", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_carriers:
        serve_carriers(args.serve_carriers)
        return
    if args.serve_cht:
        serve_cht(args.serve_cht, args.count)
        return
    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.latency, args.report_delay)
        return
    if args.unlimited:
        print(json.dumps(unlimited(args), indent=2))
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
