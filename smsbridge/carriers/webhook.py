"""How a webhook's HTTP request reaches a carrier module: `WebhookRequest`, decoded once here.

Bodies are decoded by content type: a form in its Content-Type's `charset` when it names one,
else UTF-8, or Latin-1 when it is not UTF-8 (what Kannel sends by default); the query string the
same way. A body that is neither a form nor JSON is refused (415).

Every JSON body the bridge reads (carrier webhooks here, the phones' `/api/sms` in
smsbridge/carriers/chtgateway.py) goes through `loads_json`, which measures the nesting depth
with a cheap scan BEFORE parsing: `[` x 30000 is a 400, not a RecursionError. `inflate` undoes
`Content-Encoding: gzip` with a cap on the decompressed size (a zip bomb is a 413).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from smsbridge.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects a JSON body may have (the bridge's own bodies are
three levels deep)."""


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as a carrier module sees it. `form` is the urlencoded body, `json` the
    parsed JSON body (None if the body is not JSON), `query` the query string; all keep
    repeated keys as lists of pairs."""

    method: str
    url: str  # the URL as received (scheme://host/path?query)
    path: str  # the path as received, e.g. /carriers/twilio/TOKEN/inbound
    headers: Mapping[str, str]  # lower-case names
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    json: Any = None
    body: bytes = b""
    query_string: str = ""
    arrived_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)  # our clock when it arrived

    @property
    def content_type(self) -> str:
        return media_type(self.headers.get("content-type", ""))[0]

    def params(self) -> dict[str, str]:
        """The request's parameters as one flat dict: query, then form, then a JSON object's
        scalar members (later wins). What most carriers mean by "the fields"."""
        out: dict[str, str] = dict(self.query)
        out.update(self.form)
        if isinstance(self.json, dict):
            for key, value in self.json.items():
                if value is None:
                    continue
                out[str(key)] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str],
        query_string: str,
        body: bytes,
        arrived_at: datetime,
    ) -> WebhookRequest:
        """Decode the query string and the body by content type (urlencoded or JSON); raises
        BadRequest when the body does not decode, UnsupportedMediaType for any other type."""
        headers = {k.lower(): v for k, v in headers.items()}
        ctype, charset = media_type(headers.get("content-type", ""))
        query = _form_pairs(_query_bytes(query_string), None)
        form: tuple[tuple[str, str], ...] = ()
        parsed_json: Any = None
        if body:
            if ctype == "application/x-www-form-urlencoded":
                form = _form_pairs(body, charset)
            elif ctype == "application/json" or ctype.endswith("+json"):
                parsed_json = loads_json(_text(body, charset))
            else:
                named = repr(ctype) if ctype else "(none)"
                raise UnsupportedMediaType(
                    f"unsupported Content-Type {named}: send "
                    "application/x-www-form-urlencoded or application/json"
                )
        return cls(
            method=method.upper(),
            url=url,
            path=path,
            headers=headers,
            query=query,
            form=form,
            json=parsed_json,
            body=body,
            query_string=query_string,
            arrived_at=arrived_at,
        )


def media_type(header: str) -> tuple[str, str | None]:
    """A Content-Type header as (lower-case media type, its `charset` parameter or None)."""
    kind, *params = header.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').strip():
            charset = value.strip().strip('"').strip()
    return kind.strip().lower(), charset


def _query_bytes(query_string: str) -> bytes:
    """The query string as the bytes that arrived (the app hands it over decoded as Latin-1)."""
    try:
        return query_string.encode("latin-1")
    except UnicodeEncodeError:
        return query_string.encode("utf-8")


def _text(data: bytes, charset: str | None) -> str:
    """`data` in `charset` when the sender named one (BadRequest when it is not valid in it);
    else UTF-8, or Latin-1 when it is not UTF-8. Nothing is replaced by U+FFFD: a character is
    either read as sent or the request is refused."""
    if charset is not None:
        try:
            return data.decode(charset)
        except LookupError as exc:  # unknown, or not a text encoding (`hex`, `rot13`)
            raise BadRequest(f"unknown charset {charset!r}") from exc
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not valid {charset}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_UTF8 = frozenset({None, "utf-8", "utf8", "UTF-8", "UTF8"})


def _form_pairs(data: bytes, charset: str | None) -> tuple[tuple[str, str], ...]:
    """A urlencoded form (or query string): the %-escapes are undone on bytes, then each name and
    value is read as text by `_text`."""
    if not data:
        return ()
    if charset in _UTF8 and data.isascii():
        # the common case in one pass: ASCII on the wire, UTF-8 once unescaped (what `_text`
        # reads first); anything else (not UTF-8: Latin-1 per field) takes the way below
        try:
            return _utf8_pairs(data.decode("ascii"))
        except UnicodeDecodeError:
            pass
    pairs = parse_qsl(data.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return tuple(
        (_text(k.encode("latin-1"), charset), _text(v.encode("latin-1"), charset)) for k, v in pairs
    )


def _utf8_pairs(form: str) -> tuple[tuple[str, str], ...]:
    """An ASCII urlencoded form as `parse_qsl(form, keep_blank_values=True, errors="strict")`
    reads it (fields split on `&`, empty ones skipped, `+` a space, %-escapes UTF-8), without
    its generality: every webhook passes here. UnicodeDecodeError when an escape is not
    UTF-8."""
    pairs = []
    for field in form.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name = unquote(name.replace("+", " "), errors="strict")
            value = unquote(value.replace("+", " "), errors="strict")
        pairs.append((name, value))
    return tuple(pairs)


# A JSON token that matters to the depth: an escape pair inside a string (skipped whole, so an
# escaped quote does not end the string), a quote, or a bracket.
_DEPTH_TOKENS = re.compile(r'\\.|["\[\]{}]', re.S)


def json_depth_over(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `text` nests arrays/objects deeper than `limit` (brackets inside strings do not
    count). Linear in the length, and stops at the first level past `limit`."""
    depth = 0
    in_string = False
    for match in _DEPTH_TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue
        elif token in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads_json(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """A JSON body parsed; BadRequest when it is malformed or nested deeper than `limit`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("JSON body is not valid UTF-8") from exc
    if json_depth_over(text, limit):
        raise BadRequest(f"JSON body nested deeper than {limit} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("malformed JSON body") from exc


def inflate(body: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """`body` with its `Content-Encoding` undone: identity as is; gzip (or deflate) decompressed
    up to `max_bytes` (no cap when 0: SMSBRIDGE_MAX_BODY_BYTES=0 turns the limits off;
    PayloadTooLarge past it, so a small zip bomb cannot fill memory;
    BadRequest when the data is not what the header says); anything else UnsupportedMediaType."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}: send gzip or no encoding"
        )
    inflater = zlib.decompressobj(wbits)
    too_large = PayloadTooLarge(f"decompressed request body over {max_bytes} bytes")
    try:
        out = inflater.decompress(body, max_bytes + 1 if max_bytes > 0 else 0)
        if max_bytes > 0 and (len(out) > max_bytes or inflater.unconsumed_tail):
            raise too_large
        out += inflater.flush()
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding} data") from exc
    if max_bytes > 0 and len(out) > max_bytes:
        raise too_large
    if not inflater.eof:
        raise BadRequest(f"body is truncated {encoding} data")
    return out
