"""The operator console at /console: server-rendered pages (Jinja2 templates in `templates/`,
no script needed) for the people who run a deployment's SMS, signed in with their CHT accounts.

- `core`: the `Console` (sign-in against CHT, sessions, the failed-login limit, rendering)
- `routes`: its pages and actions behind the sign-in guard, mounted at /console
- `pages`: overview, message lists, one message's life, settings
- `actions`: retry or drop a dead letter, release or drop a held SMS (each confirmed first)
- `audit`: the audit table (who did what, and who read which SMS)
- `session`: signed session cookies and CSRF tokens; `charts`: the overview's SVG charts

web/app.py mounts it unless SMSBRIDGE_CONSOLE is false.
"""

from smsbridge.web.console.core import Console as Console
from smsbridge.web.console.routes import console_routes as console_routes
