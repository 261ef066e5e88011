"""One error type for bad user input: :class:`UserError`, defined in ``models.errors``
(the bottom of the import order) and re-exported here, so that ``except UserError`` in the
harness also catches the models' validation errors.

Every command-line entry point catches :class:`UserError` and prints its
message as a single line (``error: ...``) with exit code 2, so a user never
sees a traceback for a mistake they can fix. Messages name the fix.
"""

from models.errors import UserError

__all__ = ["UserError"]
