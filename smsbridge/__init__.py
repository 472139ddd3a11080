"""smsbridge: the SMS bridge between carriers, cht-gateway phones and a CHT server."""

__version__ = "0.1.0"
