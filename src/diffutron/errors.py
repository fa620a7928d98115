"""User-facing errors: raised for bad input, shown without a traceback by the CLI."""


class DiffutronError(ValueError):
    """Something the user asked for cannot be done; the message says what and how to fix it."""


class SettingError(DiffutronError):
    """A setting that cannot be used; `param` names it (None: a combination of settings is at fault)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ContextLengthError(DiffutronError):
    """An input longer than the model's context (a server answers it with `context_length_exceeded`)."""
