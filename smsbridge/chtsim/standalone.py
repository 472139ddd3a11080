"""`smsbridge chtsim`: the simulator as a standalone server with the demo deployment."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TextIO

from smsbridge.chtsim.demo_data import CHW_PHONES, GATEWAY_USER
from smsbridge.chtsim.sim import ChtSim
from smsbridge.errors import ConfigError


def parse_user(spec: str) -> tuple[str, str]:
    name, sep, password = spec.partition(":")
    if not sep or not name or not password:
        raise ConfigError(f"--user: expected name:password, got {spec!r}")
    return name, password


def build(user: str = "admin:pass", state: Path | None = None) -> ChtSim:
    """The simulator with the demo deployment (kept as it was if `state` already exists)."""
    sim = ChtSim(admin=parse_user(user), state_path=state)
    if state is None or not state.exists():
        sim.install_demo()
        sim.changed()
    return sim


def describe(sim: ChtSim, url: str, out: TextIO) -> None:
    admin = sim.admin or ("admin", "pass")
    gw_user, gw_pass = GATEWAY_USER
    host = url.split("://", 1)[1]
    print(f"CHT simulator listening on {url}", file=out)
    print(f"  admin user:    {admin[0]}:{admin[1]} (--user to change)", file=out)
    print(f"  gateway user:  {gw_user}:{gw_pass} (for the bridge)", file=out)
    print(f"  bridge config: SMSBRIDGE_CHT_URL=http://{gw_user}:{gw_pass}@{host}", file=out)
    print(f"  forms:         {', '.join(sorted(sim.state.settings.get('forms') or {}))}", file=out)
    print(f"  CHW phones:    {', '.join(CHW_PHONES.values())}", file=out)
    print(
        f"  try:           curl -u {admin[0]}:... -H 'Accept: application/json' "
        f"{url}/api/v1/settings",
        file=out,
    )
    print(
        f"  test controls: {url}/_sim/records, {url}/_sim/messages "
        '(POST {"messages": [{"to", "content"}]} to queue an SMS)',
        file=out,
    )
    if sim.state_path is not None:
        print(f"  state file:    {sim.state_path}", file=out)


def run(host: str, port: int, user: str, state: Path | None, out: TextIO = sys.stdout) -> int:
    import uvicorn

    sim = build(user, state)
    # bound before saying "listening": a port already taken is a usage problem (exit 2)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    describe(sim, f"http://{host}:{port}", out)
    out.flush()
    config = uvicorn.Config(sim.app, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    sim.changed()
    return 0
