"""One error type for bad user input.

Every command-line entry point catches :class:`UserError` and prints its
message as a single line (``error: ...``) with exit code 2, so a user never
sees a traceback for a mistake they can fix. Messages name the fix.

Defined here, at the bottom of the import order (``models`` imports nothing of
``benchmarks`` or ``analysis``), so that the models' validation errors and the
harness's are one class; ``benchmarks.errors`` re-exports it.
"""


class UserError(Exception):
    """A mistake in the user's input (name, value, file) with a one-line fix."""
