"""`python -m smsbridge` runs the CLI."""

from smsbridge.cli.main import main

raise SystemExit(main())
