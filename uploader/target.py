"""Where the events go and the key that lets them in.

The key is `<prefix>.<secret>` and travels only as `Authorization: Basic
base64(prefix:secret)` (never `?apiKey=`, which ends up in proxy logs). `Credentials` is
the one object that holds it: its repr hides the secret and `redact` scrubs every form of
the key out of text before that text reaches an exception, a log or a report.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import quote

from uploader.errors import ConfigError

DEFAULT_BASE_URL = "https://api.intempt.com"
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Credentials:
    """An API key. `repr` and `str` name the prefix only."""

    prefix: str
    secret: str = field(repr=False)

    @classmethod
    def from_key(cls, key: str) -> Credentials:
        # A key file usually ends with a newline; anything else around the key is a typo.
        prefix, dot, secret = key.strip().partition(".")
        # The messages below never quote the key: it may be almost right.
        if not (dot and prefix and secret):
            raise ConfigError(
                "the API key must look like PREFIX.SECRET (as shown in Intempt's API source "
                "settings); check INTEMPT_API_KEY or --api-key-file"
            )
        if ":" in prefix or any(c.isspace() or not c.isprintable() for c in prefix + secret):
            raise ConfigError(
                "the API key must look like PREFIX.SECRET, without spaces, control characters "
                "or ':' in the prefix; check INTEMPT_API_KEY or --api-key-file"
            )
        return cls(prefix, secret)

    @property
    def key(self) -> str:
        return f"{self.prefix}.{self.secret}"

    @property
    def authorization(self) -> str:
        token = base64.b64encode(f"{self.prefix}:{self.secret}".encode()).decode("ascii")
        return f"Basic {token}"

    def redact(self, text: str) -> str:
        """`text` without the key, the secret or the Basic token, in any of the forms in
        which they could travel (plain, URL-encoded, base64)."""
        token = self.authorization.removeprefix("Basic ")
        forms = {
            self.key,
            self.secret,
            token,
            quote(self.key, safe=""),
            quote(self.secret, safe=""),
        }
        # Longest first, so that the key is not left half-replaced by its secret's redaction.
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Credentials(prefix={self.prefix!r}, secret={REDACTED})"

    __str__ = __repr__


@dataclass(frozen=True)
class Target:
    """One source of one project: the address of the track endpoint."""

    base_url: str
    org: str
    project: str
    # A 19-digit snowflake: a float (or JavaScript number) round trip would silently turn it
    # into another source, so it stays a string end to end.
    source_id: str

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("https://", "http://")):
            raise ConfigError(
                f"the base URL must start with https:// (or http:// for a local sandbox); "
                f"got {self.base_url!r}"
            )
        for name, value in (("org", self.org), ("project", self.project)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"the {name} must be a non-empty name; got {value!r}")
        source = self.source_id
        if not isinstance(source, str) or not (source.isascii() and source.isdigit()):
            raise ConfigError(
                f"the source id must be the source's numeric id written as a string of digits "
                f"(e.g. '1234567890123456789'); got {source!r}"
            )

    @property
    def track_url(self) -> str:
        org, project = quote(self.org, safe=""), quote(self.project, safe="")
        base = self.base_url.rstrip("/")
        return f"{base}/v1/{org}/projects/{project}/sources/{self.source_id}/track"

    def describe(self) -> str:
        """The target as error messages name it (never with the key)."""
        return f"org {self.org!r}, project {self.project!r}, source id {self.source_id!r}"
