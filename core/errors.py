"""The one base type for errors meant for the user.

Every package raises its own subclasses (ContextTooLong, InvalidExample, RunActive, ...)
with a message that says what went wrong and how to fix it. The edges (the command
line, the web app) turn a UserError into a message and nothing else; any other
exception is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; str(error) is the whole message."""
