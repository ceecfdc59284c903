"""One family of errors whose message a user may see.

Anything raised as a :class:`PublicError` carries a message written for the person
at the browser or the terminal; everything else is a bug and is logged, never shown.
"""

from __future__ import annotations


class PublicError(Exception):
    """An error with a message fit for the user.

    ``status`` is the HTTP status the API answers with; ``log_message`` (optional)
    holds detail for the operator's log that the user must not see.
    """

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None, log_message: str = ""):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.log_message = log_message or message


class UnknownSlice(PublicError):
    """A slice profile that does not exist or that the user may not book."""

    status = 400

    def __init__(self, name: str, valid: list[str]):
        choices = ", ".join(valid) if valid else "none (ask your collaboration admin)"
        super().__init__(f"Unknown slice profile {name!r}. Slices you may book: {choices}.")
        self.name = name
        self.valid = valid


class BackendError(PublicError):
    """The batch system refused or failed an operation."""

    status = 502


class SettingsError(Exception):
    """The settings file is invalid; the message names the file, the key and what is allowed."""
