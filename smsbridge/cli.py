"""The `smsbridge` command line. Each sub-command is one `cmd_*` function; usage errors and
configuration problems exit 2 with a message on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from smsbridge.errors import ConfigError

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsbridge", description="SMS bridge for Community Health Toolkit deployments."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the service (webhooks, workers, CHT sync)")
    serve.add_argument("--host", help="listen address (default: SMSBRIDGE_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default: SMSBRIDGE_PORT)")
    serve.set_defaults(func=cmd_serve)

    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    print("smsbridge serve: not built yet", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"smsbridge {args.command}: configuration problem:\n{exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
