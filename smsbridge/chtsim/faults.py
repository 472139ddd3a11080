"""Fault injection and request counting, as an ASGI middleware around the whole simulator.

Faults apply to every request outside `/_sim/`, optionally only to one path (prefix) and method:

- `latency(seconds)`: every matching request waits first (until cleared);
- `fail_next(n, status)`: the next n requests get that status (CHT-style error body, optional
  `Retry-After`, or a body of your own) without being processed;
- `timeout_next(n)`: no answer at all until the client gives up (optionally after processing);
- `drop_next(n)`: the request IS processed, then the connection is closed with no response,
  so the client cannot know whether CHT did it;
- `auth_fail_next(n)`: answered as CHT answers bad credentials (the negotiated 401, or the 302
  to the login page with `redirect=True`);
- `conflict_next(n)`: the next n document writes of status updates conflict (CHT retries 3
  times, then answers 500);
- `starting`: CHT's start-up window (503 JSON, or the 200 HTML progress page).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from smsbridge.chtsim.responses import error_response, json_response, not_logged_in, prefers_json

KINDS = ("fail", "timeout", "drop", "auth")
STARTUP_PAGE = "<!DOCTYPE html><html><body><h1>Starting API</h1><p>Please wait</p></body></html>"


@dataclass
class Fault:
    kind: str
    remaining: int
    path: str | None = None
    method: str | None = None
    status: int = 503
    retry_after: str | None = None
    body: Any = None
    seconds: float = 30.0
    process: bool = False
    redirect: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or path.startswith(self.path)


def endpoint_key(method: str, path: str) -> str:
    if len(path) > 1:
        path = path.rstrip("/")
    return f"{method} {path}"


class Faults:
    """The armed faults and the request counts. Thread-safe: tests arm faults from their own
    thread while the simulator serves requests in another."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed: list[Fault] = []
        self.delays: list[tuple[float, str | None]] = []
        self.conflicts = 0
        self.starting = False
        self.monitoring_broken = False
        self.counts: Counter[str] = Counter()
        self.released = threading.Event()

    # -- arming --------------------------------------------------------------------------------

    def _arm(self, fault: Fault) -> Fault:
        if fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        with self.lock:
            self.released.clear()
            self.armed.append(fault)
        return fault

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        path: str | None = None,
        method: str | None = None,
        retry_after: float | str | None = None,
        body: Any = None,
    ) -> Fault:
        after = None if retry_after is None else str(retry_after)
        return self._arm(Fault("fail", n, path, method, status, after, body))

    def timeout_next(
        self,
        n: int = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        seconds: float = 30.0,
        process: bool = False,
    ) -> Fault:
        return self._arm(Fault("timeout", n, path, method, seconds=seconds, process=process))

    def drop_next(self, n: int = 1, *, path: str | None = None, method: str | None = None) -> Fault:
        return self._arm(Fault("drop", n, path, method, process=True))

    def auth_fail_next(
        self,
        n: int = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        redirect: bool = False,
    ) -> Fault:
        return self._arm(Fault("auth", n, path, method, status=401, redirect=redirect))

    def arm(self, spec: dict[str, Any]) -> Fault:
        """Arm a fault from its JSON description (`POST /_sim/faults`)."""
        kind = spec.get("kind")
        n = int(spec.get("times", spec.get("n", 1)))
        where = {"path": spec.get("path"), "method": spec.get("method")}
        if kind == "fail":
            return self.fail_next(
                n,
                int(spec.get("status", 503)),
                retry_after=spec.get("retry_after"),
                body=spec.get("body"),
                **where,
            )
        if kind == "timeout":
            return self.timeout_next(
                n,
                seconds=float(spec.get("seconds", 30.0)),
                process=bool(spec.get("process", False)),
                **where,
            )
        if kind == "drop":
            return self.drop_next(n, **where)
        if kind == "auth":
            return self.auth_fail_next(n, redirect=bool(spec.get("redirect", False)), **where)
        raise ValueError(f"unknown fault kind {kind!r}")

    def latency(self, seconds: float, *, path: str | None = None) -> None:
        with self.lock:
            self.delays = [d for d in self.delays if d[1] != path]
            if seconds > 0:
                self.delays.append((seconds, path))

    def conflict_next(self, n: int = 1) -> None:
        with self.lock:
            self.conflicts += n

    def take_conflict(self) -> bool:
        with self.lock:
            if self.conflicts > 0:
                self.conflicts -= 1
                return True
            return False

    def clear(self) -> None:
        """Disarm everything and release requests held by a timeout fault."""
        with self.lock:
            self.armed.clear()
            self.delays.clear()
            self.conflicts = 0
            self.starting = False
            self.monitoring_broken = False
            self.released.set()

    # -- counting ------------------------------------------------------------------------------

    def count(self, method: str, path: str) -> None:
        with self.lock:
            self.counts[endpoint_key(method, path)] += 1

    def request_count(self, path: str, method: str | None = None) -> int:
        """Requests served for a path (`/api/sms`), all methods or one."""
        with self.lock:
            if method is not None:
                return self.counts[endpoint_key(method.upper(), path)]
            return sum(
                n
                for key, n in self.counts.items()
                if key.split(" ", 1)[1] == (path.rstrip("/") or "/")
            )

    def take(self, method: str, path: str) -> tuple[Fault | None, float]:
        with self.lock:
            delay = sum(s for s, p in self.delays if p is None or path.startswith(p))
            for fault in self.armed:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    self.armed = [f for f in self.armed if f.remaining > 0]
                    return fault, delay
            return None, delay


class FaultMiddleware:
    """Outermost ASGI layer: counts requests, then applies start-up mode and armed faults."""

    def __init__(self, app: Any, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim/"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.faults.count(method, path)
        request = Request(scope)
        if self.faults.starting:
            response: Response
            if prefers_json(request):
                response = json_response({"error": "Service unavailable"}, 503)
            else:
                response = HTMLResponse(STARTUP_PAGE, status_code=200)
            await response(scope, receive, send)
            return
        fault, delay = self.faults.take(method, path)
        if delay:
            await asyncio.sleep(delay)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind == "fail":
            await self._fail(fault, request)(scope, receive, send)
        elif fault.kind == "auth":
            await not_logged_in(request, basic_prompt=False, force_redirect=fault.redirect)(
                scope, receive, send
            )
        elif fault.kind == "drop":
            await self._swallow(scope, receive)
            await _drop_connection(send)
        else:  # timeout
            if fault.process:
                await self._swallow(scope, receive)
            await self._hang(receive, fault.seconds)
            await _drop_connection(send)

    def _fail(self, fault: Fault, request: Request) -> Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is not None:
            return json_response(fault.body, fault.status, headers)
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        response = error_response(request, fault.status, phrase)
        response.headers.update(headers)
        return response

    async def _swallow(self, scope: Any, receive: Any) -> None:
        """Run the request through the simulator and throw its answer away."""

        async def discard(message: Any) -> None:
            return None

        await self.app(scope, receive, discard)

    async def _hang(self, receive: Any, seconds: float) -> None:
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        deadline = time.monotonic() + seconds
        try:
            while (
                not watcher.done()
                and time.monotonic() < deadline
                and not self.faults.released.is_set()
            ):
                await asyncio.sleep(0.02)
        finally:
            watcher.cancel()


async def _drop_connection(send: Any) -> None:
    """Close the client's connection without a response (uvicorn's transport, if reachable;
    otherwise start a response and fail, which makes uvicorn close the connection)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.close()
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise ConnectionAbortedError("chtsim: connection dropped on purpose")
