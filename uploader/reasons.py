"""Reject reasons that know their cause: the words without the row's own values.

`Reason("timestamp 1999-01-01 … is outside …", cause="timestamp outside 2010..2039")` is a
str (the full reason a person reads in the rejects file) that also says what the summary
counts it under, so that 427 rejects of one cause are not shown with one row's value.
"""

from __future__ import annotations


class Reason(str):
    cause: str

    def __new__(cls, text: str, cause: str) -> Reason:
        reason = super().__new__(cls, text)
        reason.cause = cause
        return reason

    def __reduce__(self) -> tuple[type[Reason], tuple[str, str]]:  # to and from workers
        return (Reason, (str(self), self.cause))


def cause_of(reason: str) -> str:
    return getattr(reason, "cause", reason)
