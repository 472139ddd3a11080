"""A fake cht-gateway Android phone (medic/cht-gateway's poll loop: post what it
received and its status updates, send what the answer lists), to test the bridge's `/api/sms` —
or CHT's.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class PhoneSms:
    id: str
    to: str
    content: str
    status: str = "UNSENT"
    reason: str | None = None


class FakePhone:
    """A cht-gateway Android phone: polls `url` (an `/api/sms`) with Basic auth, forwards up to 10
    received SMS and 20 status updates per request (again at once while a batch was full), stores
    the messages it is given (a repeated id is not sent again; its status is re-flagged), then
    works its outbox one step per cycle: new SMS go on the air (PENDING, up to 10 per cycle),
    PENDING ones become SENT, SENT ones DELIVERED; or FAILED with a reason (`fail_next`).
    Every status change is reported once, in order. `sent` lists every SMS put on the air."""

    WT_BATCH, STATUS_BATCH, SEND_BATCH = 10, 20, 10

    def __init__(self, url: str, user: str, password: str, *, deliver: bool = True) -> None:
        self.url = url
        self.auth = (user, password)
        self.deliver = deliver
        self.inbox: deque[dict[str, Any]] = deque()  # WT messages waiting to be forwarded
        self.outbox: dict[str, PhoneSms] = {}  # WO messages by id
        self.updates: deque[tuple[str, str, str | None]] = deque()  # (id, status, reason)
        self.sent: list[PhoneSms] = []
        self.failures: deque[str] = deque()
        self.polls = 0

    def receive(self, sender: str, content: str, *, sms_id: str | None = None) -> str:
        """An SMS arrives on the phone's SIM; it is forwarded on the next poll."""
        sms_id = sms_id or str(uuid.uuid4())
        now_ms = int(time.time() * 1000)
        self.inbox.append(
            {
                "id": sms_id,
                "from": sender,
                "content": content,
                "sms_sent": now_ms,
                "sms_received": now_ms,
            }
        )
        return sms_id

    def fail_next(self, reason: str = "generic; errorCode=1") -> None:
        self.failures.append(reason)

    def _flag(self, sms: PhoneSms, status: str, reason: str | None = None) -> None:
        sms.status, sms.reason = status, reason
        self.updates.append((sms.id, status, reason))

    def exchange(self, client: httpx.Client) -> int:
        """POST /api/sms until both batches are short. Returns the messages received."""
        received = 0
        while True:
            self.polls += 1
            wt = list(itertools.islice(self.inbox, self.WT_BATCH))
            ups = list(itertools.islice(self.updates, self.STATUS_BATCH))
            body = {
                "messages": wt,
                "updates": [
                    {"id": i, "status": s, **({"reason": r} if r else {})} for i, s, r in ups
                ],
            }
            response = client.post(
                self.url,
                auth=self.auth,
                content=json.dumps(body),
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": "Dalvik/2.1.0 medic.gateway.alert/1.0.0",
                },
            )
            response.raise_for_status()
            for _ in wt:
                self.inbox.popleft()
            for _ in ups:
                self.updates.popleft()
            for message in response.json().get("messages") or []:
                received += 1
                known = self.outbox.get(message["id"])
                if known is not None:
                    self._flag(known, known.status, known.reason)  # "touch": re-report
                    continue
                to = str(message["to"]).replace(" ", "").replace("-", "")
                sms = PhoneSms(message["id"], to, message["content"])
                self.outbox[sms.id] = sms
                self._flag(sms, "UNSENT")
            if len(wt) < self.WT_BATCH and len(ups) < self.STATUS_BATCH:
                return received

    def poll(self, client: httpx.Client | None = None) -> int:
        """One wake-up: exchange, then work the outbox. Returns the messages received. Raises
        httpx errors on a failed poll (nothing is lost: everything goes again next time)."""
        if client is None:
            with httpx.Client(timeout=10) as own:
                received = self.exchange(own)
        else:
            received = self.exchange(client)
        self.work()
        return received

    def work(self) -> None:
        for sms in list(self.outbox.values()):
            if sms.status == "PENDING":
                self._flag(sms, "SENT")
            elif sms.status == "SENT" and self.deliver:
                self._flag(sms, "DELIVERED")
        waiting = [s for s in self.outbox.values() if s.status == "UNSENT"][: self.SEND_BATCH]
        for sms in waiting:
            if self.failures:
                self._flag(sms, "FAILED", self.failures.popleft())
                continue
            self.sent.append(sms)
            self._flag(sms, "PENDING")

    def sent_count(self, to: str, content: str | None = None) -> int:
        return sum(1 for s in self.sent if s.to == to and (content is None or s.content == content))
