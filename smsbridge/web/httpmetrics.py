"""HTTP request metrics: an ASGI middleware counting every request by route template, method
and status, and timing it.

    smsbridge_http_requests_total{route, method, status}
    smsbridge_http_request_duration_seconds{route, method}   (histogram)

`route` is the template the router matched (`/carriers/{carrier}/{token}/inbound`), never the
raw path: the path carries webhook tokens (secrets) and would make a series per token tried.
A request no route matched (404, or refused before routing, e.g. 413 by bodylimit.py) is
`route="unmatched"`. The webhook path is hot, so the work per request is two dictionary
lookups and one clock read at each end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"

# Seconds: a webhook is answered in milliseconds (one commit); /readyz may wait on CHT.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """The two HTTP metrics in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "smsbridge_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "smsbridge_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template and method.",
            ["route", "method"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() is slower than a dict lookup: keep the children
            children = (
                self.requests.labels(route, method, str(status)),
                self.duration.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class HttpMetrics:
    """Count and time each HTTP request in `metrics`. Install it outermost, so that refusals
    by inner middleware (413) are counted too."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: RequestMetrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = self.clock()
        status = 500  # what the client gets if the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(
                _template(scope), _method(scope["method"]), status, self.clock() - start
            )


def _template(scope: Scope) -> str:
    """The matched route's template, under the path of the Mount it is in if any (a Mount
    appends its path to `root_path` and keeps the app's own in `app_root_path`), or
    UNMATCHED."""
    route = scope.get("route")  # set by Starlette's router on a match
    path = getattr(route, "path", None)
    if not path:
        return UNMATCHED
    root = scope.get("root_path", "")
    mount = root[len(scope.get("app_root_path", root)) :]
    return mount + path


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(method: str) -> str:
    """The method, or `other`: anyone can send any word as a method."""
    return method if method in _METHODS else "other"
