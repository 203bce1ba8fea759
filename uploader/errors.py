"""The project's exception types. Error text is part of the interface: it names the file,
row or option at fault and what to do, and never contains the API key or a whole payload."""

from __future__ import annotations


def said(exc: BaseException) -> str:
    """What a library said, on one line, to quote in a message."""
    return " ".join(str(exc).split())


class UploaderError(Exception):
    """Base of every error the uploader raises on purpose."""


class ConfigError(UploaderError, ValueError):
    """Bad options: nothing was read or sent."""


class InputError(UploaderError):
    """Input that cannot be read or mapped at all (bad rows are rejects, not errors)."""


class CheckpointError(UploaderError):
    """The state file is unusable, or disagrees with the input. `kind`: "full" (the disk
    filled up: resumable once there is room), "unwritable", "damaged", "version", "busy"
    (another run holds it), "changed" (an input changed) or "other"."""

    def __init__(self, message: str, *, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type[CheckpointError], tuple[str], dict[str, str]]:
        return (CheckpointError, (str(self),), {"kind": self.kind})


class OutputError(UploaderError):
    """A file the run writes (rejects, report, request bodies) cannot be written."""


class SendError(UploaderError):
    """An HTTP exchange with the track API that did not end in 2xx."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        if self.status is None:  # timeout or connection error: nothing was answered
            return True
        if self.status == 400:
            return "can't create a collection for auto-event" in self.body.lower()
        return self.status in (408, 429) or self.status >= 500


class ExposedKeyWarning(UserWarning):
    """The API key file can be read by other users of the machine."""
