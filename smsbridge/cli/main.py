"""The `smsbridge` command line. Each sub-command is one `cmd_*` function; usage errors and
configuration problems exit 2 with a message on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from smsbridge import __version__
from smsbridge.errors import ConfigError, UsageError

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsbridge", description="SMS bridge for Community Health Toolkit deployments."
    )
    parser.add_argument("--version", action="version", version=f"smsbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the service (webhooks, workers, CHT sync)")
    serve.add_argument("--host", help="listen address (default: SMSBRIDGE_HOST)")
    serve.add_argument("--port", type=_port, help="listen port (default: SMSBRIDGE_PORT)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser(
        "check-config", help="show the effective settings (secrets masked) and every problem"
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check_config)

    inbox = sub.add_parser("inbox", help="inbound SMS: list them")
    inbox_sub = inbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    inbox_ls = inbox_sub.add_parser("ls", help="list inbound SMS, newest first")
    _listing_options(inbox_ls, states="received, submitted, relayed, rejected, dead")
    inbox_ls.add_argument(
        "--carrier", dest="channel", metavar="CARRIER", help="only from this carrier"
    )
    inbox_ls.set_defaults(func=cmd_inbox_ls)

    outbox = sub.add_parser("outbox", help="the task queue: list, retry or drop dead letters")
    outbox_sub = outbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    outbox_ls = outbox_sub.add_parser("ls", help="list tasks (work waiting, running, dead)")
    _listing_options(
        outbox_ls,
        states="ready, leased, dead, waiting (= not dead), or an outgoing SMS state: "
        "queued, held, sending, sent, delivered, failed",
    )
    outbox_ls.add_argument("--channel", help="only outgoing SMS routed to this channel")
    outbox_ls.add_argument("--kind", help="only tasks of this kind (submit, send, ...)")
    outbox_ls.add_argument(
        "--ref", help="only this outgoing SMS, whatever its state (`send` prints its ref)"
    )
    outbox_ls.set_defaults(func=cmd_outbox_ls)
    for action, text, metavar in (
        ("retry", "replay dead letters now, by task id", "ID"),
        ("drop", "delete dead letters (task id) or drop held SMS (ref)", "ID|REF"),
        ("release", "send SMS the loop guard held, by ref", "REF"),
    ):
        op = outbox_sub.add_parser(action, help=text)
        op.add_argument("targets", nargs="+", metavar=metavar, help="from `outbox ls`")
        op.set_defaults(func=cmd_outbox_action, action=action)

    backup = sub.add_parser(
        "backup", help="write a consistent copy of the database, while the service runs"
    )
    backup.add_argument("path", type=Path, metavar="PATH", help="the copy to write")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(func=cmd_backup)

    migrate = sub.add_parser(
        "migrate", help="bring the database's schema up to this release (serve does it too)"
    )
    migrate.set_defaults(func=cmd_migrate)

    migrate_store = sub.add_parser(
        "migrate-store",
        help="copy the SQLite database into an empty PostgreSQL database (several bridges)",
    )
    migrate_store.add_argument(
        "--to", required=True, metavar="URL", help="the PostgreSQL database: postgresql://..."
    )
    migrate_store.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="PATH",
        help="the SQLite database to copy (default: SMSBRIDGE_DATABASE)",
    )
    migrate_store.set_defaults(func=cmd_migrate_store)

    prune = sub.add_parser(
        "prune", help="delete finished SMS older than the retention window (counts printed)"
    )
    prune.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="days to keep (default: SMSBRIDGE_RETENTION_DAYS)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(func=cmd_prune)

    send = sub.add_parser("send", help="queue one SMS by hand (routed and sent like any other)")
    send.add_argument("--to", required=True, help="international number, e.g. +254712345678")
    send.add_argument("text", help="the SMS text")
    send.set_defaults(func=cmd_send)

    demo = sub.add_parser("demo", help="play a scripted scenario with simulators on loopback")
    demo.add_argument(
        "--timeout", type=_seconds, default=20.0, help="seconds to wait for each step (20)"
    )
    demo.set_defaults(func=cmd_demo)

    chtsim = sub.add_parser("chtsim", help="run the CHT simulator with a demo deployment")
    chtsim.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    chtsim.add_argument("--port", type=_port, default=5988, help="listen port (5988)")
    chtsim.add_argument("--user", default="admin:pass", help="admin name:password (admin:pass)")
    chtsim.add_argument(
        "--state", type=_state_file, help="keep the simulator's state in this JSON file"
    )
    chtsim.set_defaults(func=cmd_chtsim)

    parse = sub.add_parser(
        "parse", help="parse SMS forms as CHT would and print one JSON object per message"
    )
    parse.add_argument("--forms", type=Path, help="JSON file: a `forms` object or app_settings")
    parse.add_argument("--locale", help="the message locale (CHT doc.locale)")
    parse.add_argument("--tz", default="UTC", help="the CHT server's timezone (UTC)")
    parse.add_argument(
        "--jsonl", action="store_true", help="read JSON lines on stdin, write JSON lines"
    )
    parse.add_argument("messages", nargs="*", metavar="MESSAGE", help="SMS texts to parse")
    parse.set_defaults(func=cmd_parse)

    return parser


def cmd_parse(args: argparse.Namespace) -> int:
    from smsbridge.cli.parse import parse_options, run_jsonl, run_messages

    forms, options = parse_options(args.forms, args.locale, args.tz, args.jsonl, args.messages)
    if args.jsonl:
        run_jsonl(sys.stdin, sys.stdout, forms, options)
    else:
        assert forms is not None
        run_messages(args.messages, sys.stdout, forms, options)
    return 0


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds above 0: {raw!r}")
    return value


def _days(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of days above 0: {raw!r}")
    return value


def _state_file(raw: str) -> Path:
    """`chtsim --state FILE`: a new file in an existing directory, or a state file it wrote."""
    import json

    path = Path(raw)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {str(path.parent)!r} does not exist")
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read {raw!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise argparse.ArgumentTypeError(f"{raw!r} is not a simulator state file")
    return path


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {raw!r}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from smsbridge.cli.check_config import check
    from smsbridge.server import serve

    report = check()  # the environment, read once: every problem at once, as check-config
    if not report.ok or report.settings is None:
        raise ConfigError("\n".join(report.problems))
    for warning in report.warnings:
        print(f"smsbridge serve: warning: {warning}", file=sys.stderr)
    return serve(report.settings, host=args.host, port=args.port)


def cmd_check_config(args: argparse.Namespace) -> int:
    from smsbridge.cli.check_config import check, render

    report = check(probe_cht=True)  # CHT's own settings too (serve does not call CHT first)
    print(render(report, as_json=args.json))
    return 0 if report.ok else 2


def _listing_options(parser: argparse.ArgumentParser, *, states: str) -> None:
    from smsbridge.cli.listings import duration

    parser.add_argument("--state", help=f"only this state: {states}")
    parser.add_argument("--older-than", type=duration, metavar="AGE", help="e.g. 15m, 2h, 1d")
    parser.add_argument("--newer-than", type=duration, metavar="AGE", help="e.g. 15m, 2h, 1d")
    parser.add_argument("--limit", type=int, default=50, help="at most this many rows (50)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--reveal", action="store_true", help="show full numbers and SMS text")


def cmd_inbox_ls(args: argparse.Namespace) -> int:
    from smsbridge.cli.listings import list_command

    return list_command("inbox", args)


def cmd_outbox_ls(args: argparse.Namespace) -> int:
    from smsbridge.cli.listings import list_command

    return list_command("outbox", args)


def cmd_outbox_action(args: argparse.Namespace) -> int:
    from smsbridge.cli.actions import queue_command

    if args.action == "retry" and not all(t.isdigit() for t in args.targets):
        raise UsageError("outbox retry takes task ids (numbers) from `outbox ls`")
    return queue_command(args.action, args.targets)


def cmd_backup(args: argparse.Namespace) -> int:
    from smsbridge.cli.listings import open_store
    from smsbridge.settings import Settings
    from smsbridge.store import backup

    database = Settings.from_env().database
    if isinstance(database, str):
        raise UsageError(
            "backup copies an SQLite database; SMSBRIDGE_DATABASE is PostgreSQL: back it up "
            "with PostgreSQL's own tools (pg_dump, a replica)"
        )
    target: Path = args.path
    if target.is_dir():
        raise UsageError(f"{str(target)!r} is a directory: name the backup file to write")
    if target.exists() and not args.force:
        raise UsageError(f"{str(target)!r} exists: choose a new file, or add --force")
    if not target.parent.is_dir():
        raise UsageError(f"directory {str(target.parent)!r} does not exist")
    if target.resolve() == database.resolve():
        raise UsageError("PATH is the database itself: choose another file")
    open_store(database).close()  # there is a database, of this release's schema
    size = backup(database, target)
    print(f"backed up {database} to {target} ({size} bytes)")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from smsbridge.migrations import schema_version
    from smsbridge.settings import Settings
    from smsbridge.store import open_store

    database = Settings.from_env().database
    if isinstance(database, str):  # PostgreSQL
        from smsbridge.postgres.store import schema_version_at

        before = schema_version_at(database)
    elif not database.exists():
        raise ConfigError(f"SMSBRIDGE_DATABASE: no database at {str(database)!r}")
    else:
        before = schema_version(database)  # ConfigError when it is not a database
    with open_store(database) as store:  # ConfigError when a newer release wrote it
        if store.version == before:
            print(f"{store.name}: schema version {before}, up to date")
        else:
            print(f"{store.name}: schema version {before} -> {store.version}")
    return 0


def cmd_migrate_store(args: argparse.Namespace) -> int:
    from smsbridge.cli.migrate_store import migrate_store_command

    return migrate_store_command(args.to, args.source, sys.stdout)


def cmd_prune(args: argparse.Namespace) -> int:
    from smsbridge.cli.prune import prune_command

    return prune_command(args.older_than, args.dry_run, sys.stdout)


def cmd_send(args: argparse.Namespace) -> int:
    from smsbridge.cli.actions import send_command

    return send_command(args.to, args.text)


def cmd_chtsim(args: argparse.Namespace) -> int:
    from smsbridge.chtsim.standalone import run

    return run(args.host, args.port, args.user, args.state)


def cmd_demo(args: argparse.Namespace) -> int:
    from smsbridge.cli.demo import run_demo

    return run_demo(sys.stdout, timeout=args.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"smsbridge {args.command}: usage error: {exc.detail}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"smsbridge {args.command}: configuration problem:\n{exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`smsbridge outbox ls --json | head`): stop quietly, with
        # stdout pointed at /dev/null so that the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
