"""User-facing errors: raised for bad input, shown without a traceback by the CLI."""


class DiffutronError(ValueError):
    """Something the user asked for cannot be done; the message says what and how to fix it."""
