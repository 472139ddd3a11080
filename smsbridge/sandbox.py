"""The sandbox: what `smsbridge serve` (and `smsbridge demo`) run against when nothing real is
configured.

- With no SMSBRIDGE_CHT_URL the built-in CHT simulator, loaded with its demo deployment, is
  started in-process on a loopback port and the bridge talks to it (said loudly in the log,
  since nothing then reaches a real CHT);
- when, in addition, no carrier is configured (SMSBRIDGE_CARRIERS empty and no carrier webhook
  token set), the `generic` carrier is enabled with the webhook token `demo-token`, and its
  outgoing SMS go to the built-in carrier simulator, which reports them delivered.

`first_run_help` is what `serve` prints once listening: a ready-to-paste curl command that posts
an SMS from a demo health worker's phone, and how to see what became of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING

from smsbridge.logs import event
from smsbridge.settings import Settings

if TYPE_CHECKING:
    from smsbridge.carriersim import CarrierSim

log = logging.getLogger(__name__)

DEMO_TOKEN = "demo-token"
"""The generic carrier's webhook token in simulator mode (nothing real is reachable then)."""

SIMULATOR_ADMIN = ("admin", "pass")
"""The CHT simulator's admin in the sandbox: who signs in to the console there."""

DEMO_CARRIER = "generic"
"""The carrier the sandbox enables when none is configured (to the carrier simulator)."""

DEMO_SMS = "P 12 Jane Atieno"
"""A pregnancy registration (form P of the simulator's demo deployment)."""


@dataclasses.dataclass(frozen=True)
class SimulatorMode:
    """What `serve` started in place of real peers (URLs on 127.0.0.1)."""

    cht_url: str
    carrier_url: str | None = None  # set when the generic carrier goes to the carrier simulator


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def keep_loopback_off_proxies(environ: MutableMapping[str, str] | None = None) -> None:
    """Add the loopback addresses to NO_PROXY/no_proxy: with HTTP(S)_PROXY set (usual on
    institutional networks) httpx would otherwise send the bridge's calls to the simulators
    on 127.0.0.1 (or to a CHT on this host) through the proxy, which cannot reach them."""
    env = os.environ if environ is None else environ
    for name in ("NO_PROXY", "no_proxy"):
        current = [h.strip() for h in env.get(name, "").split(",") if h.strip()]
        if "*" not in current:
            env[name] = ",".join(current + [h for h in LOOPBACK if h not in current])


def connect_host(host: str) -> str:
    """The address a local client uses to reach a server listening on `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


@contextlib.contextmanager
def cht_or_simulator(
    settings: Settings, *, bridge_url: str = ""
) -> Iterator[tuple[Settings, SimulatorMode | None]]:
    """The settings to run with, and the simulators started: as given when a CHT URL is set;
    otherwise pointing at the built-in CHT simulator (and, with no carrier configured, the
    generic carrier at the carrier simulator), started here on 127.0.0.1 and stopped on exit.
    `bridge_url` is where the bridge will listen (for the simulated delivery reports)."""
    if settings.cht_url:
        yield settings, None
        return
    from smsbridge.chtsim import ChtSim
    from smsbridge.chtsim.demo_data import GATEWAY_USER
    from smsbridge.loopback import serve_in_thread

    user, password = GATEWAY_USER
    sim = ChtSim(admin=SIMULATOR_ADMIN)
    sim.install_demo()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_in_thread(sim.app))
        host_port = url.split("://", 1)[1]
        event(
            log,
            "cht_simulator_started",
            logging.WARNING,
            url=url,
            note="SMSBRIDGE_CHT_URL is empty: using the built-in CHT simulator (demo deployment); "
            "no report reaches a real CHT",
        )
        effective = dataclasses.replace(settings, cht_url=f"http://{user}:{password}@{host_port}")
        mode = SimulatorMode(cht_url=url)
        if not settings.enabled_carriers:
            from smsbridge.carriersim import CarrierSim

            carriers = CarrierSim()
            carrier_url = stack.enter_context(serve_in_thread(carriers.app))
            effective = with_demo_carrier(effective, carrier_url, carriers, bridge_url)
            mode = SimulatorMode(cht_url=url, carrier_url=carrier_url)
            event(
                log,
                "carrier_simulator_started",
                logging.WARNING,
                url=carrier_url,
                note="no carrier configured: the generic carrier is enabled with a demo token "
                "and sends through the built-in carrier simulator",
            )
        yield effective, mode


def with_demo_carrier(
    settings: Settings, carrier_url: str, carriers: CarrierSim, bridge_url: str
) -> Settings:
    """`settings` with the generic carrier enabled: webhook token DEMO_TOKEN, sends to the
    carrier simulator at `carrier_url`, delivery reports back to `bridge_url`."""
    _, send_token = carriers.credentials[DEMO_CARRIER]
    demo = dict(settings.carrier.get(DEMO_CARRIER, {}))
    demo.update(webhook_token=DEMO_TOKEN, send_url=f"{carrier_url}/send", send_token=send_token)
    return dataclasses.replace(
        settings,
        carriers=(DEMO_CARRIER,),
        carrier={**settings.carrier, DEMO_CARRIER: demo},
        public_url=settings.public_url or bridge_url,
    )


def as_served(settings: Settings) -> Settings:
    """`settings` with the carriers `serve` will really enable: the demo carrier when neither
    a CHT URL nor any carrier is configured (what `check-config` must check routes against)."""
    if settings.cht_url or settings.enabled_carriers:
        return settings
    return dataclasses.replace(settings, carriers=(DEMO_CARRIER,))


def first_run_help(bridge_url: str, mode: SimulatorMode, settings: Settings) -> str:
    """What a newcomer can do with the bridge running against the simulators."""
    from smsbridge.chtsim.demo_data import CHW_PHONES

    lines = [
        "",
        f"smsbridge is running on {bridge_url} against the built-in CHT simulator",
        f"  ({mode.cht_url}, demo deployment: forms P, V, D;",
        f"  health workers' phones {', '.join(CHW_PHONES.values())}).",
        "  Nothing reaches a real CHT: set SMSBRIDGE_CHT_URL for that (README, Settings).",
    ]
    if settings.console:
        admin, password = SIMULATOR_ADMIN
        lines.append(
            f"  Operator console: {bridge_url}/console (sign in as {admin} / {password},"
            " the simulator's CHT admin)."
        )
    if mode.carrier_url is None:
        lines += [
            f"  Carriers enabled: {', '.join(sorted(settings.enabled_carriers))} "
            "(post SMS to their webhook URLs, README: Receiving SMS).",
            f"  See the reports CHT stored:  curl -s {mode.cht_url}/_sim/records",
            "",
        ]
        return "\n".join(lines)
    phone = CHW_PHONES["chw-alice"]
    webhook = f"{bridge_url}/carriers/generic/{DEMO_TOKEN}/inbound"
    where = settings.database  # a path, or a PostgreSQL URL (its password masked)
    shown = dict(settings.described())["SMSBRIDGE_DATABASE"]
    database = shlex.quote(shown if isinstance(where, str) else str(where.resolve()))
    lines += [
        f"  No carrier configured: the generic carrier takes SMS at webhook token {DEMO_TOKEN!r},",
        f"  and sends replies through the built-in carrier simulator ({mode.carrier_url}).",
        "",
        "Send an SMS in (a pregnancy registration from a health worker's phone):",
        "",
        f"  curl -s {webhook} --data-urlencode from={phone} "
        f"--data-urlencode {shlex.quote('text=' + DEMO_SMS)}",
        "",
        "Then see what became of it:",
        *_commented(
            (f"curl -s {mode.cht_url}/_sim/records", "the report CHT stored"),
            (f"curl -s {mode.cht_url}/_sim/messages", "CHT's reply and its delivery states"),
            (f"SMSBRIDGE_DATABASE={database} smsbridge inbox ls", "the SMS received"),
            (
                f"SMSBRIDGE_DATABASE={database} smsbridge outbox ls --state delivered",
                "the SMS sent",
            ),
        ),
        "",
        "CHT's reply goes out within seconds: the bridge asks CHT for it right after CHT",
        f"has taken the report (and every {settings.sync_interval:g} s anyway,"
        " SMSBRIDGE_SYNC_INTERVAL).",
        "",
    ]
    return "\n".join(lines)


def _commented(*rows: tuple[str, str]) -> list[str]:
    """`  command   # comment` lines, the comments aligned."""
    width = max(len(command) for command, _ in rows)
    return [f"  {command:<{width}}  # {comment}" for command, comment in rows]
