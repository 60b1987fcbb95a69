"""The one exception type for problems the user can fix."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, config or environment: reported as one line, no traceback."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
