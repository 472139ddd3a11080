"""The failed-login limit of cht-gateway phone accounts (smsbridge/web/logins.py): wrong
passwords back off per account and per client address, the locks are counted in /metrics, and
a phone with the right password gets in once the lock-out has passed. Time is the bridge's fake
clock; client addresses come through X-Forwarded-For (uvicorn trusts it from 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from smsbridge.web.logins import PhoneLogins, TooManyLogins
from tests.fakeclock import FakeClock
from tests.web.test_metrics import scrape

ACCOUNTS = {"phone1": "right-pass-1", "phone2": "right-pass-2"}
ATTEMPTS = 3


def login(bridge: Any, user: str, password: str, address: str = "203.0.113.7") -> httpx.Response:
    return bridge.http.get("/api/sms", auth=(user, password), headers={"X-Forwarded-For": address})


@pytest.fixture
def phones(bridge_factory: Callable[..., Any]) -> Any:
    return bridge_factory(
        SMSBRIDGE_CARRIERS="chtgateway",
        SMSBRIDGE_CHTGATEWAY_ACCOUNTS=",".join(f"{u}:{p}" for u, p in ACCOUNTS.items()),
        SMSBRIDGE_PHONE_LOGIN_ATTEMPTS=str(ATTEMPTS),
        SMSBRIDGE_PHONE_LOGIN_LOCKOUT="60",
    )


def test_wrong_passwords_lock_the_account_out_until_the_window_passes(phones: Any) -> None:
    for _ in range(ATTEMPTS):
        assert login(phones, "phone1", "guess").status_code == 401
    locked = login(phones, "phone1", "guess")
    assert locked.status_code == 429
    assert "too many wrong logins" in locked.text
    assert locked.headers["Retry-After"] == "1"
    # while locked even the right password is not looked at
    assert login(phones, "phone1", ACCOUNTS["phone1"]).status_code == 429
    phones.clock.advance(1.01)
    assert login(phones, "phone1", ACCOUNTS["phone1"]).status_code == 200  # after the window
    # the success cleared the count: wrong passwords start from scratch
    assert login(phones, "phone1", "guess").status_code == 401


def test_the_lock_out_doubles_with_each_further_failure_up_to_the_cap(phones: Any) -> None:
    for _ in range(ATTEMPTS):
        login(phones, "phone1", "guess")
    waits = []
    for _ in range(8):
        response = login(phones, "phone1", "guess")
        assert response.status_code == 429
        wait = int(response.headers["Retry-After"])
        waits.append(wait)
        phones.clock.advance(wait)
        assert login(phones, "phone1", "guess").status_code == 401  # checked again: wrong
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    phones.clock.advance(60)
    assert login(phones, "phone1", ACCOUNTS["phone1"]).status_code == 200


def test_an_address_guessing_many_accounts_is_locked_out(phones: Any) -> None:
    for n in range(ATTEMPTS):
        assert login(phones, f"nobody{n}", "guess", "198.51.100.9").status_code == 401
    assert login(phones, "phone2", ACCOUNTS["phone2"], "198.51.100.9").status_code == 429
    # the accounts themselves are not locked: phone2 from its own address gets in
    assert login(phones, "phone2", ACCOUNTS["phone2"], "192.0.2.2").status_code == 200


def test_a_phone_is_not_locked_out_by_guesses_from_elsewhere(phones: Any) -> None:
    home = "192.0.2.1"
    assert login(phones, "phone1", ACCOUNTS["phone1"], home).status_code == 200
    for n in range(ATTEMPTS + 2):  # someone else guesses phone1's password from many places
        login(phones, "phone1", "guess", f"198.51.100.{n}")
    assert login(phones, "phone1", ACCOUNTS["phone1"], "198.51.100.200").status_code == 429
    assert login(phones, "phone1", ACCOUNTS["phone1"], home).status_code == 200


def test_refused_logins_are_counted_in_metrics(phones: Any) -> None:
    for _ in range(ATTEMPTS + 2):
        login(phones, "phone1", "guess")
    got = scrape(phones.http.get("/metrics").text)
    assert got[("smsbridge_phone_logins_refused_total", (("reason", "wrong_password"),))] == 3
    assert got[("smsbridge_phone_logins_refused_total", (("reason", "locked"),))] == 2


def test_no_limit_when_attempts_is_zero() -> None:
    clock = FakeClock()
    logins = PhoneLogins(attempts=0, lockout=60, clock=clock)
    guard = logins.guard("192.0.2.1", ACCOUNTS)
    for _ in range(50):
        guard.admit("phone1")  # would raise TooManyLogins once locked
        guard.failed("phone1")
    assert logins.wait("phone1", "192.0.2.1") == 0


def test_counts_are_forgotten_and_bounded() -> None:
    clock = FakeClock()
    refused: list[str] = []
    logins = PhoneLogins(attempts=1, lockout=10, clock=clock, on_refused=refused.append)
    guard = logins.guard("192.0.2.1", ACCOUNTS)
    guard.failed("phone1")
    with pytest.raises(TooManyLogins):
        guard.admit("phone1")
    assert refused == ["wrong_password", "locked"]
    clock.advance(3601)  # an hour without failures: forgotten
    guard.failed("phone1")  # the first failure again: 1 s, not 2 s
    with pytest.raises(TooManyLogins) as raised:
        guard.admit("phone1")
    assert raised.value.retry_after == pytest.approx(1.0)
    small = PhoneLogins(attempts=1, lockout=10, clock=clock, max_entries=5)
    for n in range(50):
        small.guard(f"198.51.100.{n}", ACCOUNTS).failed("unknown")
    assert small.wait(None, "198.51.100.0") == 0  # the oldest went first
    assert small.wait(None, "198.51.100.49") > 0
