"""A PostgreSQL URL (SMSBRIDGE_DATABASE=postgresql://...): shown without its password, its
passwords for the logs' redaction, and the connection parameters the bridge connects with.

The URL is read by libpq's own parser (psycopg's `conninfo_to_dict`), so whatever libpq accepts
is understood here too: several hosts with their ports (`db1:5432,db2:5433`), a password in the
query string (`?password=...`), percent-encoding. A URL libpq refuses (a raw `%` in the
password), or any URL when psycopg is not installed, is masked by a cruder rule that hides
everything before the last `@` and every `password=` value; its parser's own message is never
repeated, as it quotes the password.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

MASK = "****"

CONNECTION_DEFAULTS = {
    "connect_timeout": "5",  # seconds to reach a server, each host in turn
    "keepalives": "1",
    "keepalives_idle": "10",  # a silent peer is probed after 10 s ...
    "keepalives_interval": "5",
    "keepalives_count": "3",  # ... and given up after 3 unanswered probes
    "tcp_user_timeout": "30000",  # ms that sent data may stay unacknowledged
}
"""What `connection_params` adds unless the URL sets it: without them a bridge waits for a
lost server (or one behind a dead network) as long as the kernel's TCP does, hours."""

_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&]*")
_USERINFO_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/?]*:(?P<password>.*)@")


def _parsed(url: str) -> dict[str, str] | None:
    """libpq's reading of `url`, or None when it refuses it (or psycopg is missing)."""
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Error:
        return None


def masked(url: str) -> str:
    """`url` with its password hidden, for messages and check-config. Non-PostgreSQL URLs
    (the CHT's `https://user:password@host`) get the same rule."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    params = _parsed(url) if scheme.lower() in ("postgresql", "postgres") else None
    if params is None:
        return _crudely_masked(scheme, rest)
    if "password" not in params:
        return url
    return _as_url(scheme, params)


def _crudely_masked(scheme: str, rest: str) -> str:
    netloc_end = len(rest)
    for stop in "/?#":
        at = rest.find(stop, rest.rfind("@") + 1)
        if at != -1:
            netloc_end = min(netloc_end, at)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{hosts}"
    return f"{scheme}://{netloc}{_QUERY_PASSWORD.sub(lambda m: m[1] + MASK, tail)}"


def _as_url(scheme: str, params: dict[str, str]) -> str:
    """`params` (libpq's reading of a URL) written back as a URL, the password masked."""
    rest = dict(params)
    user = rest.pop("user", "")
    rest.pop("password", None)
    hosts = rest.pop("host", "").split(",")
    ports = rest.pop("port", "").split(",")
    dbname = rest.pop("dbname", "")
    if len(ports) == 1:
        ports = ports * len(hosts)
    netlocs: list[str] = []
    sockets: list[str] = []
    for host, port in zip(hosts, ports, strict=False):
        if host.startswith("/"):  # a Unix socket directory goes back in the query
            sockets.append(host)
            continue
        name = f"[{host}]" if ":" in host else quote(host, safe="")
        netlocs.append(name + (f":{port}" if port else ""))
    if sockets:
        rest["host"] = ",".join(sockets)
    userinfo = f"{quote(user, safe='')}:{MASK}@"
    query = f"?{urlencode(rest, safe='/,')}" if rest else ""
    return f"{scheme}://{userinfo}{','.join(netlocs)}/{quote(dbname, safe='')}{query}"


def passwords(url: str) -> list[str]:
    """The password of `url` as it may appear in text: decoded, and as written in the URL (for
    the logs' redaction, smsbridge/logs.py `secrets_of`)."""
    found: list[str] = []
    params = _parsed(url)
    if params is not None and params.get("password"):
        found.append(params["password"])
    written = _USERINFO_PASSWORD.match(url.split("?", 1)[0])
    if written and written["password"]:
        found.append(written["password"])
    found += [m.split("=", 1)[1] for m in re.findall(r"(?i)password=[^&]+", url)]
    return list(dict.fromkeys(p for p in found if p))


def connection_params(url: str) -> dict[str, Any]:
    """The keyword parameters to connect to `url` with: the URL's, with CONNECTION_DEFAULTS
    for those it does not set. Raises psycopg.ProgrammingError on a URL libpq refuses."""
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, Any] = dict(conninfo_to_dict(url))
    for name, value in CONNECTION_DEFAULTS.items():
        params.setdefault(name, value)
    return params
