"""`python -m smsbridge` runs the CLI."""

from smsbridge.cli import main

raise SystemExit(main())
