"""Health endpoints.

- `GET /healthz`: the process is up and serving (200, always, while it can answer at all).
- `GET /readyz`: the bridge can do its job — the database takes a write, CHT answers and accepts
  our credentials, form definitions are loaded. 200 when all pass, else 503; the JSON body says
  which check failed and why:

      {"ready": false, "checks": {"database": {"ok": true},
                                  "cht": {"ok": false, "detail": "CHT refused our credentials"},
                                  "forms": {"ok": true, "detail": "12 forms"}}}

The CHT check is cached for `cht_cache_seconds` (default 10 s), and skipped while the bridge
has paused CHT work after a 401, so that a busy readiness probe never walks the bridge into CHT's
failed-login lockout (10 failures in 10 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from smsbridge.errors import AuthFailure, PeerError
from smsbridge.store import Store

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
        timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.cht_probe = cht_probe
        self.forms_status = forms_status
        self.cht_paused = cht_paused
        self.clock = clock
        self.cht_cache_seconds = cht_cache_seconds
        self.timeout = timeout
        self._cht_cached: tuple[float, CheckResult] | None = None
        self._cht_lock = asyncio.Lock()

    async def check(self) -> dict[str, CheckResult]:
        database, cht = await asyncio.gather(self.check_database(), self.check_cht())
        return {"database": database, "cht": cht, "forms": self.check_forms()}

    async def check_database(self) -> CheckResult:
        if self.store is None:
            return CheckResult(False, "no database")
        store = self.store

        def probe(conn: Any) -> None:
            Store.put_kv(conn, "health.probe", "", time.time())

        try:
            await asyncio.wait_for(store.write(probe), self.timeout)
        except TimeoutError:
            return CheckResult(False, f"database write took longer than {self.timeout:g} s")
        except Exception as exc:  # any failure to write is the answer
            return CheckResult(False, f"database not writable: {type(exc).__name__}: {exc}")
        return CheckResult(True)

    async def check_cht(self) -> CheckResult:
        if self.cht_paused is not None:
            reason = self.cht_paused()
            if reason:
                return CheckResult(False, f"CHT work paused: {reason}")
        if self.cht_probe is None:
            return CheckResult(False, "no CHT client configured")
        async with self._cht_lock:
            now = self.clock()
            if self._cht_cached is not None and now - self._cht_cached[0] < self.cht_cache_seconds:
                return self._cht_cached[1]
            result = await self._probe_cht()
            self._cht_cached = (self.clock(), result)
            return result

    async def _probe_cht(self) -> CheckResult:
        assert self.cht_probe is not None
        try:
            await asyncio.wait_for(self.cht_probe(), self.timeout)
        except TimeoutError:
            return CheckResult(False, f"CHT did not answer within {self.timeout:g} s")
        except AuthFailure as exc:
            return CheckResult(False, f"CHT refused our credentials: {exc.detail or exc.code}")
        except PeerError as exc:
            return CheckResult(False, f"CHT unreachable: {exc.detail or exc.code}")
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
