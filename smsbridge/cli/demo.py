"""`smsbridge demo`: the whole flow on loopback, in a few seconds, with nothing to configure.

Starts the CHT simulator (with its demo deployment: forms P/V/D, three health workers, replies
to good reports), the carrier simulator (Africa's Talking's API) and the bridge between them,
then plays a short scenario and prints what happened at each step:

1. a health worker registers a pregnancy by SMS -> the report appears in CHT;
2. CHT's reply to her is fetched, sent and delivered;
3. a reminder CHT schedules for another worker is sent and delivered;
4. a malformed SMS is answered with the error the sender can act on.

Each step waits (polling, with a timeout) for its outcome; nothing sleeps for a fixed time.
`run_demo` returns 0 when every step saw its outcome, 1 otherwise.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import httpx

from smsbridge.carriers import load_settings
from smsbridge.carriersim import CarrierSim
from smsbridge.chtsim.demo_data import CHW_PHONES, GATEWAY_USER
from smsbridge.chtsim.sim import ChtSim, running_chtsim
from smsbridge.loopback import serve_in_thread

T = TypeVar("T")

SHORT_CODE = "+254700000000"
CARRIER = "africastalking"


class StepFailed(Exception):
    pass


@dataclass
class Stage:
    """The running simulators and bridge, with their URLs."""

    cht: ChtSim
    carriers: CarrierSim
    bridge_url: str
    token: str
    out: TextIO
    timeout: float
    database: Path

    # -- printing ----------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, number: int, title: str) -> None:
        self.say()
        self.say(f"[{number}/4] {title}")

    def saw(self, text: str) -> None:
        self.say(f"      {text}")

    # -- acting --------------------------------------------------------------------------------

    def sms_from(self, phone: str, text: str) -> None:
        """The carrier delivers an SMS to the bridge's webhook, as Africa's Talking does."""
        message_id = "ATXid_" + secrets.token_hex(8)
        response = httpx.post(
            f"{self.bridge_url}/carriers/{CARRIER}/{self.token}/inbound",
            data={
                "from": phone,
                "to": SHORT_CODE,
                "text": text,
                "id": message_id,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            timeout=10,
        )
        self.saw(f'{phone} sends "{text}" -> bridge answers the carrier {response.status_code}')
        if response.status_code >= 300:
            raise StepFailed(f"the bridge refused the SMS: {response.text}")

    def wait(self, what: str, probe: Callable[[], T | None]) -> T:
        """Poll `probe` until it returns something, showing progress; StepFailed on timeout."""
        started = time.monotonic()
        shown = 0
        while True:
            found = probe()
            if found is not None and found is not False:
                elapsed = time.monotonic() - started
                if shown:
                    self.out.write("\n")
                self.saw(f"{what}: done in {elapsed:.1f} s")
                return found
            elapsed = time.monotonic() - started
            if elapsed > self.timeout:
                if shown:
                    self.out.write("\n")
                raise StepFailed(f"{what}: nothing after {self.timeout:.0f} s")
            if int(elapsed) > shown:  # one dot a second while waiting
                if not shown:
                    self.out.write(f"      waiting for {what} ")
                shown = int(elapsed)
                self.out.write(".")
                self.out.flush()
            time.sleep(0.05)

    # -- looking ---------------------------------------------------------------------------------

    def report(self, form: str, sender: str, known: set[str]) -> dict[str, Any] | None:
        for doc in self.cht.records():
            if doc["_id"] not in known and doc.get("form") == form and doc.get("from") == sender:
                return doc
        return None

    def sms_to(self, phone: str, after: int) -> Any:
        sent = [s for s in self.carriers.sends[after:] if s.to == phone]
        return sent[0] if sent else None

    def delivered(self, message_id: str) -> list[str] | None:
        try:
            states = self.cht.states(message_id)
        except KeyError:
            return None
        return states if "delivered" in states else None

    def message_to(self, phone: str, after_ids: set[str]) -> dict[str, Any] | None:
        for message in self.cht.messages():
            if message["to"] == phone and message["id"] not in after_ids:
                return message
        return None


def bridge_environment(
    cht_url: str, carrier_url: str, token: str, database: Path
) -> dict[str, str]:
    """The bridge's settings for the demo: CHT and Africa's Talking are the simulators."""
    user, password = GATEWAY_USER
    host = cht_url.split("://", 1)[1]
    return {
        "SMSBRIDGE_CHT_URL": f"http://{user}:{password}@{host}",
        "SMSBRIDGE_DATABASE": str(database),
        "SMSBRIDGE_CARRIERS": CARRIER,
        "SMSBRIDGE_AFRICASTALKING_WEBHOOK_TOKEN": token,
        "SMSBRIDGE_AFRICASTALKING_USERNAME": "sandbox",
        "SMSBRIDGE_AFRICASTALKING_API_KEY": "at-api-key",
        "SMSBRIDGE_AFRICASTALKING_API_URL": carrier_url,
        "SMSBRIDGE_AFRICASTALKING_SENDER": SHORT_CODE,
        "SMSBRIDGE_SYNC_INTERVAL": "0.5",
        "SMSBRIDGE_FORMS_REFRESH": "300",
        "SMSBRIDGE_RETRY_BASE": "0.2",
        "SMSBRIDGE_LOG_LEVEL": "WARNING",
    }


@contextmanager
def stage(out: TextIO, timeout: float) -> Iterator[Stage]:
    """Start the CHT simulator, the carrier simulator and the bridge on 127.0.0.1."""
    from smsbridge.web.app import create_app

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smsbridge-demo-")))
        cht = ChtSim()
        cht.install_demo()
        cht_url = stack.enter_context(running_chtsim(cht))
        print(f"CHT simulator        {cht_url}  (demo deployment: forms P, V, D)", file=out)
        carriers = CarrierSim()
        carrier_url = stack.enter_context(serve_in_thread(carriers.app))
        print(f"carrier simulator    {carrier_url}  (Africa's Talking API)", file=out)
        token = secrets.token_urlsafe(16)
        database = tmp / "smsbridge.db"
        settings = load_settings(bridge_environment(cht_url, carrier_url, token, database))
        bridge_url = stack.enter_context(serve_in_thread(create_app(settings)))
        carriers.set_callback(CARRIER, f"{bridge_url}/carriers/{CARRIER}/{token}/status")
        print(f"bridge               {bridge_url}  (database in {tmp})", file=out, flush=True)
        yield Stage(cht, carriers, bridge_url, token, out, timeout, database)


def scenario(s: Stage) -> None:
    alice, bob = CHW_PHONES["chw-alice"], CHW_PHONES["chw-bob"]
    s.wait("the bridge to be ready", lambda: _ready(s.bridge_url))

    s.step(1, "A health worker registers a pregnancy by SMS")
    known = {doc["_id"] for doc in s.cht.records()}
    known_messages = {m["id"] for m in s.cht.messages()}
    sends_before = len(s.carriers.sends)
    s.sms_from(alice, "P 12 Jane Atieno")
    doc = s.wait("the report in CHT", lambda: s.report("P", alice, known))
    fields = doc.get("fields") or {}
    s.saw(
        f"CHT report {doc['_id']}: form {doc.get('form')}, "
        + ", ".join(f"{k}={v}" for k, v in fields.items())
        + f", reported_date={_iso_ms(doc.get('reported_date'))}"
    )

    s.step(2, "CHT's reply reaches her phone")
    message = s.wait("CHT's reply", lambda: s.message_to(alice, known_messages))
    s.saw(f'CHT queues "{message["content"]}" (message {message["id"]})')
    reply = s.wait("the reply to be sent", lambda: s.sms_to(alice, sends_before))
    s.saw(f"the bridge sends it via {reply.carrier} to {reply.to}")
    states = s.wait("CHT to hear it was delivered", lambda: s.delivered(message["id"]))
    s.saw("CHT message states: " + " -> ".join(states))

    s.step(3, "A reminder CHT scheduled is sent and delivered")
    reminder = "Reminder: Jane Atieno has an ANC visit tomorrow."
    reminder_id = s.cht.add_outgoing(bob, reminder)
    s.saw(f'CHT queues "{reminder}" for {bob} (message {reminder_id})')
    states = s.wait("the reminder to be delivered", lambda: s.delivered(reminder_id))
    s.saw("CHT message states: " + " -> ".join(states))

    s.step(4, "A malformed SMS is answered with its error")
    sends_before = len(s.carriers.sends)
    s.sms_from(alice, "P twelve")
    error = s.wait("the error reply", lambda: s.sms_to(alice, sends_before))
    s.saw(f'sent to {error.to}: "{error.text}"')


def _iso_ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value / 1000))


def _ready(bridge_url: str) -> bool | None:
    try:
        response = httpx.get(f"{bridge_url}/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return True if response.status_code == 200 else None


def run_demo(out: TextIO, *, timeout: float = 20.0) -> int:
    from smsbridge.sandbox import keep_loopback_off_proxies

    keep_loopback_off_proxies()  # everything here is on 127.0.0.1, whatever HTTP_PROXY says
    started = time.monotonic()
    print("smsbridge demo: starting the simulators and the bridge on 127.0.0.1", file=out)
    try:
        with stage(out, timeout) as s:
            scenario(s)
    except StepFailed as exc:
        print(f"\ndemo FAILED: {exc}", file=out, flush=True)
        return 1
    print(
        f"\ndemo finished in {time.monotonic() - started:.1f} s: all four steps worked.", file=out
    )
    return 0
