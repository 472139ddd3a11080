"""Health endpoints.

- `GET /healthz`: the process is up and serving (200, always, while it can answer at all).
- `GET /readyz`: the bridge can do its job — the database takes a write and its disk has room,
  CHT answers and accepts our credentials, form definitions are loaded. 200 when all pass, else
  503; the JSON body says which check failed and why:

      {"ready": false, "checks": {"database": {"ok": true},
                                  "cht": {"ok": false, "detail": "CHT refused our credentials"},
                                  "forms": {"ok": true, "detail": "12 forms"}}}

/readyz answers from cached state, within about `answer_within` seconds whatever its peers do.
Each check that talks to something (`CachedCheck`: the database, CHT, and any `extra` check)
runs in the background: a request starts a probe when the last result is older than the
check's cache time and waits `answer_within` for it; a probe still running answers with the
last result, or "probe pending" before the first one; a probe that outlives `timeout` is a
failure ("did not answer within ..."). A hanging CHT therefore makes /readyz say so, not hang.

The CHT check calls nothing while the bridge has paused CHT work after a 401, and a 401 it meets
pauses CHT work (smsbridge/cht/breaker.py `ChtGate.readiness_probe`), so that a busy readiness
probe never walks the bridge into CHT's failed-login lockout (10 failures in 10 s).

The database check is a tiny write plus the free space of the database's filesystem: below
`min_free_bytes` (SMSBRIDGE_MIN_FREE_DISK_MB) the bridge is not ready, before SQLite starts
failing writes with "database or disk is full".

To add a check: pass it in `extra` (name -> an async probe returning a `CheckResult`); it is
cached and answered like the others.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from smsbridge.errors import AuthFailure, PeerError
from smsbridge.store import SQLITE, Store

ChtProbe = Callable[[], Awaitable[None]]
"""Raises on failure (AuthFailure when CHT refuses our credentials), e.g. `cht.check_auth`."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok}
        if self.detail:
            out["detail"] = self.detail
        return out


Probe = Callable[[], Awaitable[CheckResult]]


class CachedCheck:
    """One check answered from its last result, refreshed in the background (module doc)."""

    def __init__(
        self,
        what: str,
        probe: Probe,
        *,
        clock: Callable[[], float],
        cache_seconds: float,
        timeout: float,
        answer_within: float,
    ) -> None:
        self.what = what  # names the check in its details ("CHT", "database")
        self.probe = probe
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.answer_within = answer_within
        self._last: tuple[float, CheckResult] | None = None
        self._running: asyncio.Task[None] | None = None

    async def result(self) -> CheckResult:
        now = self.clock()
        stale = self._last is None or now - self._last[0] >= self.cache_seconds
        if stale and self._running is None:
            self._running = asyncio.ensure_future(self._refresh())
        running = self._running
        if running is not None:
            await asyncio.wait({running}, timeout=self.answer_within)
        if self._last is None:
            return CheckResult(False, f"{self.what} probe pending")
        return self._last[1]

    async def _refresh(self) -> None:
        try:
            result = await asyncio.wait_for(self.probe(), self.timeout)
        except TimeoutError:
            result = CheckResult(False, f"{self.what} did not answer within {self.timeout:g} s")
        except Exception as exc:  # a probe that breaks is a failed check, never a 500
            result = CheckResult(False, f"{self.what} check failed: {type(exc).__name__}")
        self._last = (self.clock(), result)
        self._running = None


class Readiness:
    """The readiness checks of one bridge. Each part is optional: a check whose source is
    missing reports not ready with a detail saying so."""

    def __init__(
        self,
        *,
        store: Store | None,
        cht_probe: ChtProbe | None,
        forms_status: Callable[[], tuple[bool, str]] | None,
        cht_paused: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cht_cache_seconds: float = 10.0,
        database_cache_seconds: float = 5.0,
        min_free_bytes: int = 0,
        timeout: float = 5.0,
        answer_within: float = 0.05,
        extra: Mapping[str, Probe] | None = None,
    ) -> None:
        self.store = store
        self.cht_probe = cht_probe
        self.forms_status = forms_status
        self.cht_paused = cht_paused
        self.min_free_bytes = min_free_bytes

        def cached(what: str, probe: Probe, cache_seconds: float) -> CachedCheck:
            return CachedCheck(
                what,
                probe,
                clock=clock,
                cache_seconds=cache_seconds,
                timeout=timeout,
                answer_within=answer_within,
            )

        self._database = cached("database", self._probe_database, database_cache_seconds)
        self._cht = cached("CHT", self._probe_cht, cht_cache_seconds)
        self._extra = {
            name: cached(name, probe, cht_cache_seconds) for name, probe in (extra or {}).items()
        }

    async def check(self) -> dict[str, CheckResult]:
        names = ["database", "cht", *self._extra]
        results = await asyncio.gather(
            self.check_database(),
            self.check_cht(),
            *(check.result() for check in self._extra.values()),
        )
        return {**dict(zip(names, results, strict=True)), "forms": self.check_forms()}

    async def check_database(self) -> CheckResult:
        if self.store is None:
            return CheckResult(False, "no database")
        return await self._database.result()

    async def _probe_database(self) -> CheckResult:
        assert self.store is not None

        def probe(conn: Any) -> None:
            Store.put_kv(conn, "health.probe", "", time.time())

        try:
            await self.store.write(probe)
        except Exception as exc:  # any failure to write is the answer
            return CheckResult(False, f"database not writable: {type(exc).__name__}: {exc}")
        if self.min_free_bytes > 0 and self.store.dialect == SQLITE:  # a file on our disk
            free = shutil.disk_usage(self.store.path.resolve().parent).free
            if free < self.min_free_bytes:
                return CheckResult(
                    False,
                    f"disk almost full: {free // 2**20} MB free where the database is, "
                    f"under SMSBRIDGE_MIN_FREE_DISK_MB={self.min_free_bytes // 2**20}",
                )
        return CheckResult(True)

    async def check_cht(self) -> CheckResult:
        if self.cht_paused is not None:
            reason = self.cht_paused()
            if reason:
                return CheckResult(False, f"CHT work paused: {reason}")
        if self.cht_probe is None:
            return CheckResult(False, "no CHT client configured")
        return await self._cht.result()

    async def _probe_cht(self) -> CheckResult:
        assert self.cht_probe is not None
        try:
            await self.cht_probe()
        except AuthFailure as exc:
            return CheckResult(False, f"CHT refused our credentials: {exc.detail or exc.code}")
        except PeerError as exc:
            return CheckResult(False, f"CHT unreachable: {exc.detail or exc.code}")
        except TimeoutError:
            raise  # CachedCheck words it
        except Exception as exc:
            return CheckResult(False, f"CHT unreachable: {type(exc).__name__}")
        return CheckResult(True)

    def check_forms(self) -> CheckResult:
        if self.forms_status is None:
            return CheckResult(False, "no form definitions source")
        try:
            ok, detail = self.forms_status()
        except Exception as exc:
            return CheckResult(False, f"form definitions unavailable: {type(exc).__name__}")
        return CheckResult(ok, detail)


def channels_check(report: Callable[[], Mapping[str, str]]) -> Probe:
    """/readyz's `channels`: each send channel whose circuit breaker is open or that a throttle
    paused (outbound/channels.py), as `report` describes them. It reports and never fails
    readiness: the bridge still takes SMS and fails over, and a load balancer taking it out of
    service would help no channel recover."""

    async def probe() -> CheckResult:
        troubled = report()
        detail = "; ".join(f"{channel}: {what}" for channel, what in sorted(troubled.items()))
        return CheckResult(True, detail or "every channel closed")

    return probe


async def healthz(request: Request) -> JSONResponse:
    """GET /healthz: the process is up."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """GET /readyz: 200 when every check passes, else 503; the body lists each check."""
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    if readiness is None:
        checks = {"app": CheckResult(False, "readiness checks not set up")}
    else:
        checks = await readiness.check()
    ready = all(c.ok for c in checks.values())
    body = {"ready": ready, "checks": {name: c.to_json() for name, c in checks.items()}}
    return JSONResponse(body, status_code=200 if ready else 503)
