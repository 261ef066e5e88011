"""One error type for bad user input.

Every command-line entry point catches :class:`UserError` and prints its
message as a single line (``error: ...``) with exit code 2, so a user never
sees a traceback for a mistake they can fix. Messages name the fix.
"""


class UserError(Exception):
    """A mistake in the user's input (name, value, file) with a one-line fix."""
