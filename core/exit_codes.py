"""Exit codes of every command of the toolkit (``edge-run``, ``selfmis ...``), defined once.

Like brainflow's ``BrainFlowExitCodes``: one :class:`~enum.IntEnum`, documented here,
used by every entry point. An exception that ends a command carries its code
(:class:`CodedError`), so the code is decided where the fault is understood,
not re-guessed by the caller.

======  ==========  ==========================================================
code    name        meaning
======  ==========  ==========================================================
0       OK          finished normally
1       FAILURE     an unexpected internal error (a bug: please report it)
2       USAGE       bad arguments or a bad configuration file
3       MODEL       the model bundle cannot be loaded or is not valid
4       SOURCE      the input (port, file, device, recording) is missing,
                    not permitted or not readable
5       LOST        a live device was lost after the reconnect retries
6       OUTLET      an outlet (MQTT broker, web port, LSL) could not start
7       TARGET      a deploy target (a gateway over ssh or a local release
                    directory) cannot be reached or written, is busy, or
                    refuses the operation (nothing to roll back to, a version
                    installed with other files, a failed ``--post-cmd``)
======  ==========  ==========================================================

``selfmis deploy`` ends a refused *release* (caps, hashes, card, an unsigned or
untrusted signature, a gateway without ``allowed_signers``) with MODEL.
"""
from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "CodedError"]


class ExitCode(IntEnum):
    """What a command's exit status means (see the module's table)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    MODEL = 3
    SOURCE = 4
    LOST = 5
    OUTLET = 6
    TARGET = 7


class CodedError(Exception):
    """An error that knows the exit code it ends a command with."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str = "", exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)
