"""What a user can get wrong, as one exception type the command line turns into one line.

Raise `UserError` (or a subclass) with a message that says what to do; `movierec` prints it as
`movierec: <message>` on stderr and exits with `exit_code`, never with a traceback. Set
`MOVIEREC_DEBUG=1` (or pass `--debug`) to see the traceback as well.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in a setting, a path, a value or a request that the user can fix."""

    exit_code = 2


class NotFound(UserError):
    """A path, store, version or log that does not exist where the user said it would."""


class Unavailable(UserError):
    """A server the command needs (Kafka, the object store, a port) cannot be used right now."""

    exit_code = 1
