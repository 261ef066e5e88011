"""How the command-line entry points end on bad input, and when a signal stops them.

:class:`UserError`, for bad user input, is defined in ``models.errors`` (the bottom of
the import order) and re-exported here, so that ``except UserError`` in the harness also
catches the models' validation errors. Every entry point catches it and prints its message
as a single line (``error: ...``) with exit code 2, so a user never sees a traceback for a
mistake they can fix. Messages name the fix.

:func:`terminate_as_interrupt` makes SIGTERM (``kill PID``, a batch scheduler's time limit)
end a command the way Ctrl-C does, so that joblib stops its worker processes instead of
leaving them training, orphaned, with the runs' locks held.
"""

import signal
from contextlib import contextmanager

from models.errors import UserError

__all__ = ["UserError", "terminate_as_interrupt"]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
