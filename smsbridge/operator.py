"""What an operator does to the queue by hand: replay or drop dead letters (`smsbridge outbox
retry|drop`) and queue one SMS (`smsbridge send`). The running service picks the work up from
the database like any other task.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Sequence

from smsbridge.errors import ConfigError
from smsbridge.listings import open_store
from smsbridge.logs import mask_phone
from smsbridge.outbox import Outbox
from smsbridge.settings import Settings

E164 = re.compile(r"\+[1-9]\d{6,14}")


def dead_letter_command(action: str, ids: Sequence[int]) -> int:
    """`outbox retry|drop ID...`: one line per id; exit 1 if any id was not a dead letter."""
    settings = Settings.from_env()
    failed = 0
    with open_store(settings.database) as store:
        box = Outbox(store)
        for task_id in ids:
            task = box.get(task_id)
            if task is None or task.state != "dead":
                state = "no such task" if task is None else f"task is {task.state}, not dead"
                print(f"{task_id}: not a dead letter ({state})", file=sys.stderr)
                failed += 1
                continue
            ok = box.retry_dead(task_id, time.time()) if action == "retry" else box.drop(task_id)
            done = "queued again" if action == "retry" else "dropped"
            outcome = done if ok else "changed meanwhile, try again"
            print(f"{task_id}: {outcome} ({task.kind} {task.ref})")
            failed += 0 if ok else 1
    return 1 if failed else 0


def send_command(to: str, text: str) -> int:
    """`send --to NUMBER TEXT`: store one outgoing SMS and its send task; print its ref."""
    from smsbridge import outgoing
    from smsbridge.segments import segment

    number = re.sub(r"[\s\-().]", "", to)
    if not E164.fullmatch(number):
        raise ConfigError(f"--to: {to!r} is not an international number like +254712345678")
    if not text.strip():
        raise ConfigError("the SMS text is empty")
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
    print("follow it with: smsbridge outbox ls --kind send")
    return 0
