"""The expected-error type of every eercf job and the rule that tells expected errors from bugs.

An expected error is something the person running a job can fix: a bad input file or flag, a
refused index, an unwritable output, a missing checkpoint. Jobs raise `UserInputError` (or a
subclass: `io_formats.FormatError`, `checkpoint.CheckpointError`) with a message that names the
input and says what is wrong; the `eercf` command prints that one line and exits 2. Anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno

# OSErrors about a path the user named (input missing, output unwritable): expected, not bugs.
_EXPECTED_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                       FileExistsError)
_EXPECTED_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.ENAMETOOLONG}
EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 1


class UserInputError(ValueError):
    """A bad input, flag, index or output the user can fix; the message names it."""

    exit_code = EXIT_USER_ERROR


class RunFailedError(RuntimeError):
    """A run that failed for a reason outside the user's inputs (a storage outage, an
    unreachable endpoint); reported as one line naming what failed, exit 1."""

    exit_code = EXIT_RUN_FAILED


def is_expected(exc: BaseException) -> bool:
    """True for errors the CLI reports as one line with exit 2 (see module docstring)."""
    if isinstance(exc, (UserInputError, RunFailedError, *_EXPECTED_OS_ERRORS)):
        return True
    return isinstance(exc, OSError) and exc.errno in _EXPECTED_ERRNOS


def exit_code_of(exc: BaseException) -> int:
    """The exit code of an expected error: 1 for a failed run (RunFailedError), else 2."""
    code = getattr(exc, "exit_code", EXIT_USER_ERROR)
    return code if isinstance(code, int) else EXIT_USER_ERROR


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace runs collapsed)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
