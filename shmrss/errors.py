"""The errors and exit codes every layer may raise or return; imports nothing of shmrss.

``UsageError`` is bad input (one line on stderr, exit 2), ``RunFailed`` a run that could not complete
(exit 1). ``Interrupted`` (a terminating signal, exit 128 + n) lives beside the signal table in
``shmrss.runsignals``, which is as low as this module.
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: one line, exit 2."""


class RunFailed(Exception):
    """The run could not complete (a child died, start-up timed out); message is one line."""
