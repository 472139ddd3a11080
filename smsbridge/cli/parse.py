"""`smsbridge parse`: parse messages with form definitions and print one JSON object each.

Output object: `{"code", "form", "format", "fields"}` or `{"code", "error": {"code", "detail"}}`.
`code` is the form code CHT's getFormCode finds in the text; `fields` is the stored JSON of
CHT's `parse(def, doc)` (with `forms`: the definition getFormCode selects, as createByForm
does, zero-width retry included; with `form_def`: that definition whatever the code)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TextIO

from smsbridge.errors import ConfigError, FormError, UsageError
from smsbridge.smsparser.fields import ParseOptions
from smsbridge.smsparser.forms import Forms
from smsbridge.smsparser.parser import (
    JsCrash,
    crash_error,
    get_form_code,
    parse_sms,
    parse_with_format,
    to_stored,
)


def _error(code: str | None, err_code: str, detail: str) -> dict[str, Any]:
    return {"code": code, "error": {"code": err_code, "detail": detail}}


def parse_one(
    message: Any,
    forms: Mapping[str, Any] | None,
    options: ParseOptions,
    form_def: Any = None,
    doc_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The output object for one message."""
    code = get_form_code(message)
    if not isinstance(message, str):
        return _error(code, "bad_request", "`message` must be a string")
    if form_def is not None:
        if not isinstance(form_def, Mapping):
            return _error(code, "bad_request", "`form_def` must be an object")
        doc = {**(doc_extra or {}), "message": message}
        if options.locale:
            doc["locale"] = options.locale
        meta = form_def.get("meta")
        form_code = meta.get("code") if isinstance(meta, Mapping) else None
        if not isinstance(form_code, str):
            form_code = None
        try:
            fmt, parsed = parse_with_format(form_def, doc, options)
        except JsCrash as exc:
            err = crash_error(exc, form_code or code)
            return _error(code, err.code, err.detail)
        return {
            "code": code,
            "form": form_code,
            "format": fmt,
            "fields": to_stored(parsed),
        }
    if forms is None:
        return _error(code, "bad_request", "no forms: give --forms or `forms`/`form_def`")
    result = parse_sms(message, forms, options)
    if isinstance(result, FormError):
        return _error(code, result.code, result.detail)
    return {"code": code, "form": result.code, "format": result.format, "fields": result.fields}


def _line_options(base: ParseOptions, obj: Mapping[str, Any]) -> ParseOptions:
    opts = base
    settings = obj.get("settings")
    if isinstance(settings, Mapping):
        opts = ParseOptions.from_settings(
            settings, locale=base.locale, timezone=base.timezone, translations=base.translations
        )
    if isinstance(obj.get("translations"), Mapping):
        opts = replace(opts, translations=obj["translations"])
    if isinstance(obj.get("locale"), str | int | float):  # a number or boolean is a JS key
        opts = replace(opts, locale=obj["locale"])
    return opts


def parse_line(line: str, forms: Mapping[str, Any] | None, options: ParseOptions) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return _error(None, "bad_json", f"line is not valid JSON: {exc}")
    if not isinstance(obj, Mapping) or "message" not in obj:
        return _error(None, "bad_request", "each line must be a JSON object with `message`")
    line_forms: Mapping[str, Any] | None = forms
    if "forms" in obj:
        try:
            line_forms = Forms(obj["forms"])
        except ConfigError as exc:
            return _error(get_form_code(obj["message"]), "bad_request", exc.detail)
    extra = obj.get("doc_extra") if isinstance(obj.get("doc_extra"), Mapping) else None
    return parse_one(
        obj["message"], line_forms, _line_options(options, obj), obj.get("form_def"), extra
    )


def run_jsonl(
    lines: Iterable[str], out: TextIO, forms: Forms | None, options: ParseOptions
) -> None:
    _write_each(out, lines, lambda line: parse_line(line, forms, options), "line")


def run_messages(messages: Iterable[str], out: TextIO, forms: Forms, options: ParseOptions) -> None:
    _write_each(out, messages, lambda message: parse_one(message, forms, options), "message")


def _write_each(
    out: TextIO, items: Iterable[str], parse_item: Callable[[str], dict[str, Any]], what: str
) -> None:
    """One output line per item, flushed at once (a JSON-lines peer waits for each answer)."""
    with _reader_may_leave(out):
        for item in items:
            try:
                result = parse_item(item)
            except Exception as exc:  # one bad item never stops the others
                detail = f"{what} could not be parsed ({type(exc).__name__})"
                result = _error(None, "internal", detail)
            out.write(dump_line(result))
            out.flush()


_SURROGATE = re.compile("[\ud800-\udfff]")


def dump_line(result: Mapping[str, Any]) -> str:
    """One output line. Lone UTF-16 surrogates (legal in JSON input, kept by CHT) cannot be
    written as UTF-8, so a line holding one is written with `\\uXXXX` escapes (same JSON value)."""
    text = json.dumps(result, ensure_ascii=False)
    if _SURROGATE.search(text):
        text = json.dumps(result, ensure_ascii=True)
    return text + "\n"


@contextlib.contextmanager
def _reader_may_leave(out: TextIO) -> Iterator[None]:
    """Stop quietly when the reader closes the pipe (`smsbridge parse ... | head`)."""
    try:
        yield
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


def parse_options(
    forms_path: Any, locale: str | None, tz: str, jsonl: bool, messages: list[str]
) -> tuple[Forms | None, ParseOptions]:
    """Check the command line; problems raise ConfigError (the CLI exits 2)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from smsbridge.smsparser.forms import load_forms

    if jsonl and messages:
        raise UsageError("give MESSAGE arguments or --jsonl, not both")
    if not jsonl and not messages:
        raise UsageError("nothing to parse: give MESSAGE arguments or --jsonl")
    if not jsonl and forms_path is None:
        raise UsageError("--forms FILE is required to parse MESSAGE arguments")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz: unknown timezone {tz!r}") from None
    forms = load_forms(forms_path) if forms_path is not None else None
    return forms, ParseOptions(locale=locale, timezone=tz)
