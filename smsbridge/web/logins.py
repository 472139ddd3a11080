"""The failed-login limit of cht-gateway phone accounts (`/api/sms`, Basic auth).

Wrong passwords are counted twice: against the account tried (known accounts only: made-up user
names would only fill memory) and against the client's address. After
SMSBRIDGE_PHONE_LOGIN_ATTEMPTS wrong logins in a row, that account or address is locked out for
1 s, then twice as long after each further wrong login, up to SMSBRIDGE_PHONE_LOGIN_LOCKOUT
seconds. While locked, a login is answered 429 with `Retry-After` and its password is not
checked (so guessing learns nothing); once the lock-out ends, the right password is accepted
and clears the count of that account and that address. An address from which the account's
right password has come before is not held up by that account's lock (only by its own), so
someone guessing a phone's password from elsewhere does not lock the phone out.

    logins = PhoneLogins(attempts=5, lockout=300, clock=service_clock, on_refused=metrics...)
    chtgateway.authenticate(headers, known, logins.guard(client_address, known))

Counts are kept in memory (a restart forgets them), bounded to MAX_ENTRIES entries (the
least recently failed go first), and forgotten FORGET_AFTER seconds after the last failure.
Time comes from `clock` (the service's: tests move a fake one).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from smsbridge.errors import RequestError

MAX_ENTRIES = 10_000
FORGET_AFTER = 3600.0
FIRST_LOCKOUT = 1.0

WRONG_PASSWORD = "wrong_password"
LOCKED = "locked"
REASONS = (WRONG_PASSWORD, LOCKED)
"""The `reason` of a refused login (smsbridge_phone_logins_refused_total)."""


class TooManyLogins(RequestError):
    http_status = 429
    code = "too_many_logins"

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many wrong logins: try again later")
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


@dataclass
class _Failures:
    count: int
    last: float
    until: float  # locked out until then (<= last: not locked)


class PhoneLogins:
    """Failed phone logins by account and by address; see the module's docstring."""

    def __init__(
        self,
        *,
        attempts: int,
        lockout: float,
        clock: Callable[[], float],
        on_refused: Callable[[str], None] = lambda reason: None,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.attempts = attempts
        self.lockout = lockout
        self.clock = clock
        self.on_refused = on_refused
        self.max_entries = max_entries
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, str], None] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.attempts > 0

    def guard(self, address: str | None, known: Mapping[str, str]) -> ClientLogins:
        """The limit as one request from `address` sees it (chtgateway.LoginGuard)."""
        return ClientLogins(self, address or "unknown", known)

    # -- what the guard asks ---------------------------------------------------------------

    def wait(self, user: str | None, address: str) -> float:
        """Seconds before a login as `user` (None: unknown account) from `address` may be
        checked; 0 when it may be now."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        waits = [self._remaining(("address", address), now)]
        if user is not None and (user, address) not in self._trusted:
            waits.append(self._remaining(("account", user), now))
        return max(waits)

    def failed(self, user: str | None, address: str) -> None:
        self.on_refused(WRONG_PASSWORD)
        if not self.enabled:
            return
        now = self.clock()
        self._fail(("address", address), now)
        if user is not None:
            self._fail(("account", user), now)

    def succeeded(self, user: str, address: str) -> None:
        self._failures.pop(("address", address), None)
        self._failures.pop(("account", user), None)
        key = (user, address)
        self._trusted[key] = None
        self._trusted.move_to_end(key)
        while len(self._trusted) > self.max_entries:
            self._trusted.popitem(last=False)

    def locked(self) -> None:
        self.on_refused(LOCKED)

    # -- the counts -------------------------------------------------------------------------

    def _remaining(self, key: tuple[str, str], now: float) -> float:
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        if now - entry.last > max(FORGET_AFTER, self.lockout):
            del self._failures[key]
            return 0.0
        return max(0.0, entry.until - now)

    def _fail(self, key: tuple[str, str], now: float) -> None:
        self._remaining(key, now)  # forgets an entry gone stale
        entry = self._failures.pop(key, None) or _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        beyond = entry.count - self.attempts
        if beyond >= 0:
            entry.until = now + min(self.lockout, FIRST_LOCKOUT * 2.0 ** min(beyond, 62))
        self._failures[key] = entry  # most recent last
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)


class ClientLogins:
    """One request's view of `PhoneLogins` (chtgateway.LoginGuard): the client's address is
    fixed, the account is the one the request names."""

    def __init__(self, logins: PhoneLogins, address: str, known: Mapping[str, str]) -> None:
        self.logins = logins
        self.address = address
        self.known = known

    def _account(self, user: str) -> str | None:
        return user if user in self.known else None

    def admit(self, user: str) -> None:
        wait = self.logins.wait(self._account(user), self.address)
        if wait > 0:
            self.logins.locked()
            raise TooManyLogins(wait)

    def failed(self, user: str) -> None:
        self.logins.failed(self._account(user), self.address)

    def succeeded(self, user: str) -> None:
        self.logins.succeeded(user, self.address)
