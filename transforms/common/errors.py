"""Refusal: the one base class of every refusal a person can act on (a refused day, a
features gate that failed, missing partitions, a moved article index, a lost publish).

Its only positional argument is the message: Beam re-raises a failed step's error as
type(error)(message + " [while running 'Step']"), so a subclass takes nothing else
positionally (extra fields go in keywords with defaults) and keeps its type through Beam. A Flex Template launcher never sees the exception; the backfill tells a
refusal from a crash by the day's summary.json or the job's exit code (docs/validation.md).
"""


class Refusal(Exception):
    """A refusal: the run stops and says why, in words a person can act on."""

    def __init__(self, message: str):
        super().__init__(message)
