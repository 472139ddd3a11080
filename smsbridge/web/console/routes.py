"""The console's routes: every page behind its guard (a signed-in operator), and sign-in."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from smsbridge.web.console import actions, pages
from smsbridge.web.console import session as sessions
from smsbridge.web.console.core import Console


def console_routes(console: Console) -> list[BaseRoute]:
    """The /console mount for `console`."""

    def page(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Any]:
        return functools.partial(console.guarded, functools.partial(handler, console))

    return [
        Mount(
            sessions.PATH,
            routes=[
                Route("/", page(pages.overview), methods=["GET"]),
                Route("/login", console.login_form, methods=["GET"]),
                Route("/login", console.login, methods=["POST"]),
                Route("/logout", console.logout, methods=["POST"]),
                Route("/messages", page(pages.messages), methods=["GET"]),
                Route("/inbound/{uuid}", page(pages.inbound_page), methods=["GET"]),
                Route("/outgoing/{ref:path}", page(pages.outgoing_page), methods=["GET"]),
                Route("/queue", page(pages.queue), methods=["GET"]),
                Route("/settings", page(pages.settings_page), methods=["GET"]),
                Route("/confirm", page(actions.confirm), methods=["GET"]),
                Route("/act", page(actions.act), methods=["POST"]),
            ],
        )
    ]
