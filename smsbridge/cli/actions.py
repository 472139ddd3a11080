"""What an operator does to the queue by hand: replay or drop dead letters (`smsbridge outbox
retry|drop`), release or drop SMS the loop guard held (`outbox release|drop REF`) and queue one
SMS (`smsbridge send`). The running service picks the work up from
the database like any other task.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Sequence
from typing import TextIO

from smsbridge.cli.listings import open_store
from smsbridge.errors import UsageError
from smsbridge.logs import mask_phone
from smsbridge.settings import Settings
from smsbridge.tasks import TaskQueue

E164 = re.compile(r"\+[1-9]\d{6,14}")


def queue_command(action: str, targets: Sequence[str]) -> int:
    """`outbox retry|drop|release ...`, one line per target; exit 1 if any was refused.

    retry ID      a dead-letter task: due again now, attempts reset
    drop ID       a dead-letter task: deleted (a send's SMS is failed "dropped", never sent)
    drop REF      a held SMS (loop guard): failed "held: dropped", never sent
    release REF   a held SMS: queued again, the loop guard will not stop it twice
    """
    from smsbridge.outbound import messages as outgoing

    settings = Settings.from_env()
    refused = 0
    with open_store(settings.database) as store:
        box = TaskQueue(store)
        for target in targets:
            now = time.time()
            if action == "release" or (action == "drop" and not target.isdigit()):
                change = outgoing.release_held if action == "release" else outgoing.drop_held
                ok = change(store, target, now)
                done = "released: queued to send" if action == "release" else "dropped"
                print(f"{target}: {done}" if ok else f"{target}: not a held SMS", file=_out(ok))
                refused += 0 if ok else 1
                continue
            task = box.get(int(target)) if target.isdigit() else None
            if task is None or task.state != "dead":
                state = "no such task" if task is None else f"task is {task.state}, not dead"
                print(f"{target}: not a dead letter ({state})", file=sys.stderr)
                refused += 1
                continue
            if action == "retry":
                ok, done = box.retry_dead(task.id, now), "queued again"
            elif task.kind == outgoing.SEND:
                ok, done = outgoing.drop_dead_send(store, task.id, now), "dropped"
            else:
                ok, done = box.drop(task.id), "dropped"
            outcome = done if ok else "changed meanwhile, try again"
            print(f"{target}: {outcome} ({task.kind} {task.ref})", file=_out(ok))
            refused += 0 if ok else 1
    return 1 if refused else 0


def _out(ok: bool) -> TextIO:
    return sys.stdout if ok else sys.stderr


def send_command(to: str, text: str) -> int:
    """`send --to NUMBER TEXT`: store one outgoing SMS and its send task; print its ref."""
    from smsbridge.outbound import messages as outgoing
    from smsbridge.segments import segment

    number = re.sub(r"[\s\-().]", "", to)
    if not E164.fullmatch(number):
        raise UsageError(f"--to: {to!r} is not an international number like +254712345678")
    if not text.strip():
        raise UsageError("the SMS text is empty")
    settings = Settings.from_env()
    ref = f"operator-{uuid.uuid4()}"
    now = time.time()
    with open_store(settings.database) as store:
        store.write_sync(
            lambda c: outgoing.insert_in(
                c, ref, number, text, now, origin="operator", automatic=False, source="cli"
            )
        )
    parts = segment(text).count
    print(f"queued {ref} to {mask_phone(number)} ({parts} segment{'s' if parts != 1 else ''})")
    print(f"follow it with: smsbridge outbox ls --ref {ref}")
    return 0
