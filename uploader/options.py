"""Options for mapping and packing, from CLI flags, keyword arguments or a TOML file.

Every option has one name: `--event-column` on the command line, `event_column` in TOML
and as a keyword argument. Values are checked here, so that a typo stops the run before
anything is read.
"""

from __future__ import annotations

import codecs
import numbers
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from uploader.contract import EVENT_NAMES, TOP_LEVEL_FIELDS, canonical_event_name
from uploader.errors import ConfigError

# Events per request: well under the 5,000 measured to be accepted, and the byte limit below
# cuts requests of wide rows sooner. Each request costs the run about 0.7 ms of its own
# (sender, ledger, checkpoint): 2,000 a request ran 1M rows in 3.8 s where 500 took 5.6 s
# (docs/benchmarks.md).
DEFAULT_BATCH_SIZE = 2000
# Serialised bytes per request: far below any gateway limit seen, large enough to amortise.
DEFAULT_MAX_REQUEST_BYTES = 512 * 1024
TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
VALUE_TYPES = ("string", "number", "integer", "boolean")
# Event-map value that leaves rows of that raw event out on purpose (counted, not rejected).
IGNORE = "ignore"
DEFAULT_ENCODING = "utf-8"
DECIMAL_MARKS = (".", ",")
# What repeated identical rows become (docs/event-ids.md): one event, one event each
# (numbered by occurrence), or one event whose data.quantity adds them up.
DUPLICATES = ("collapse", "keep", "quantity")
# Products missing from --catalog: rejected, or only counted.
CATALOG_MODES = ("reject", "warn")
# Names a delimiter can be given by, for the ones awkward to type in a shell or TOML.
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}

_DATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FieldMap:
    """One target field filled from one column, e.g. data.price <- UnitPrice as a number."""

    field: str
    column: str
    type: str | None = None  # only for data.<key>; None: the key's default type


@dataclass(frozen=True)
class Options:
    event: str | None = None
    event_column: str | None = None
    event_map: tuple[tuple[str, str], ...] = ()
    mapping: tuple[FieldMap, ...] = ()
    timestamp_unit: str | None = None
    timestamp_format: str | None = None
    timezone: str = "UTC"
    no_timestamp: bool = False
    keep_duplicates: bool = False  # the older name of duplicates = "keep"
    # None: not chosen. Repeats then collapse, but identical 'Product ordered' rows stop an
    # upload until a choice is made: an unattended job never guesses with orders.
    duplicates: str | None = None
    catalog: str | None = None  # a catalogue export, FILE_OR_URI[:COLUMN]
    catalog_mode: str = "reject"
    batch_size: int = DEFAULT_BATCH_SIZE
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    encoding: str = DEFAULT_ENCODING  # of CSV files; a byte order mark wins
    delimiter: str | None = None  # of CSV files; None: found in each file's header line
    decimal: str = "."  # decimal mark of numbers written as text: "." or ","

    def __post_init__(self) -> None:
        if self.delimiter is not None:
            named = DELIMITER_NAMES.get(str(self.delimiter).lower(), self.delimiter)
            object.__setattr__(self, "delimiter", named)
        _check(self)
        if self.keep_duplicates and self.duplicates not in (None, "keep"):
            raise ConfigError(
                f"--keep-duplicates is --duplicates keep; it cannot go with --duplicates "
                f"{self.duplicates}: keep one"
            )
        if self.keep_duplicates or self.duplicates == "keep":
            object.__setattr__(self, "duplicates", "keep")
            object.__setattr__(self, "keep_duplicates", True)

    @property
    def repeats(self) -> str:
        """What repeated identical rows become in this run: the choice, or collapse."""
        return self.duplicates or "collapse"


def build_options(config_file: str | None = None, **given: Any) -> Options:
    """Options from a TOML file (if any) overlaid with the given values (None = not given)."""
    values: dict[str, Any] = load_config(config_file) if config_file else {}
    flags = {k: v for k, v in given.items() if v is not None and v != () and v != []}
    if "duplicates" in flags and "keep_duplicates" not in flags:
        values.pop("keep_duplicates", None)  # the flag's choice replaces the file's
    values.update(flags)
    known = {f.name for f in fields(Options)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown option {', '.join(unknown)}; known options: {', '.join(sorted(known))}"
        )
    if "event_map" in values:
        values["event_map"] = parse_event_map(values["event_map"])
    if "mapping" in values:
        values["mapping"] = parse_mapping(values["mapping"])
    return Options(**values)


def load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from exc
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    if "map" in values:
        values["mapping"] = values.pop("map")
    return values


def parse_pairs(
    items: Iterable[str] | Mapping[str, str], flag: str, example: str
) -> list[tuple[str, str]]:
    """KEY=VALUE strings (CLI) or a mapping (TOML, Python) as ordered pairs; `example` is a
    well-formed item of `flag`, shown when one is not."""
    if isinstance(items, Mapping):
        return [(str(k), str(v)) for k, v in items.items()]
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ConfigError(
            f"{flag} takes a list of KEY=VALUE items (or a table), e.g. {flag} {example}; "
            f"got {items!r}"
        )
    pairs = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
            continue
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} {example}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_event_map(items: Any) -> tuple[tuple[str, str], ...]:
    pairs = []
    for raw, name in parse_pairs(items, "--event-map", "'basket=Added to cart'"):
        if name.lower() == IGNORE:
            pairs.append((raw, IGNORE))
            continue
        canonical = canonical_event_name(name)
        if canonical is None or canonical != name:
            hint = f" (did you mean {canonical!r}?)" if canonical else ""
            raise ConfigError(
                f"--event-map {raw}={name}: {name!r} is not an event name{hint}; use one of "
                f"{_names()}, or {IGNORE!r} to leave those rows out"
            )
        pairs.append((raw, name))
    return tuple(pairs)


def parse_mapping(items: Any) -> tuple[FieldMap, ...]:
    if isinstance(items, tuple) and all(isinstance(i, FieldMap) for i in items):
        return items
    maps = []
    for target, column in parse_pairs(items, "--map", "productId=sku"):
        name, _, kind = target.partition(":")
        if name == "productId":  # it travels in data, as the API requires
            name = "data.productId"
        maps.append(FieldMap(name, column, kind or None))
    return tuple(maps)


def _check(options: Options) -> None:
    _check_types(options)
    if options.event is not None and options.event_column is not None:
        raise ConfigError("give --event (one event for every row) or --event-column, not both")
    if options.event is not None and options.event not in EVENT_NAMES:
        canonical = canonical_event_name(options.event)
        hint = f" (did you mean {canonical!r}?)" if canonical else ""
        raise ConfigError(f"--event {options.event!r} is not an event name{hint}; use {_names()}")
    if options.timestamp_unit is not None and options.timestamp_unit not in TIMESTAMP_UNITS:
        raise ConfigError(
            f"--timestamp-unit {options.timestamp_unit!r}: use one of {', '.join(TIMESTAMP_UNITS)}"
        )
    try:
        zoneinfo.ZoneInfo(options.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"--timezone {options.timezone!r} is not a known time zone; "
            "use an IANA name such as UTC or Europe/London"
        ) from exc
    _check_dialect(options)
    if options.duplicates is not None and options.duplicates not in DUPLICATES:
        raise ConfigError(
            f"--duplicates {options.duplicates!r}: use one of {', '.join(DUPLICATES)}"
        )
    if options.catalog_mode not in CATALOG_MODES:
        raise ConfigError(
            f"--catalog-mode {options.catalog_mode!r}: use reject (unknown products are "
            "rejected) or warn (only counted)"
        )
    if options.catalog is not None and not options.catalog.strip():
        raise ConfigError("--catalog needs a file: --catalog FILE_OR_URI[:COLUMN]")
    if options.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {options.batch_size}")
    if options.max_request_bytes < 1024:
        raise ConfigError(
            f"--max-request-bytes must be at least 1024, not {options.max_request_bytes}"
        )
    seen: set[str] = set()
    for fm in options.mapping:
        _check_field(fm)
        if fm.field in seen:
            raise ConfigError(f"--map {fm.field} is given twice; keep one")
        seen.add(fm.field)


def _check_types(options: Options) -> None:
    """A TOML file or a keyword argument can hold any type: '500' is not 500."""
    for name in ("batch_size", "max_request_bytes"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{_flag(name)} must be a whole number, not {value!r}")
    for name in ("event", "event_column", "timestamp_unit", "timestamp_format", "timezone",
                 "duplicates", "catalog", "catalog_mode"):  # fmt: skip
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{_flag(name)} must be text, not {value!r}")
    for name in ("no_timestamp", "keep_duplicates"):
        value = getattr(options, name)
        if not isinstance(value, bool):  # "false" in quotes would otherwise turn it on
            raise ConfigError(f"{_flag(name)} must be true or false, not {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_dialect(options: Options) -> None:
    try:
        codecs.lookup(options.encoding)
    except (LookupError, TypeError) as exc:
        raise ConfigError(
            f"--encoding {options.encoding!r} is not an encoding Python knows; e.g. utf-8, "
            "cp1252 (Excel on Windows), latin-1, utf-16"
        ) from exc
    delimiter = options.delimiter
    if delimiter is not None and (
        not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n'
    ):
        raise ConfigError(
            f"--delimiter {delimiter!r}: give one character, e.g. ';' or '|', or 'tab'"
        )
    if options.decimal not in DECIMAL_MARKS:
        raise ConfigError(
            f"--decimal {options.decimal!r}: the decimal mark is '.' or ',' (',' for numbers "
            "written 94,86)"
        )


def _check_field(fm: FieldMap) -> None:
    if fm.field in ("name", "event"):
        raise ConfigError(
            f"--map {fm.field}={fm.column}: the event comes from --event-column or --event"
        )
    if fm.field == "data.productId" and fm.type is not None:
        raise ConfigError(f"--map productId:{fm.type}: productId is always sent as text")
    if fm.field.startswith("data."):
        key = fm.field[len("data.") :]
        if not _DATA_KEY.match(key):
            raise ConfigError(
                f"--map {fm.field}: data keys are letters, digits and underscores, e.g. data.price"
            )
        if fm.type is not None and fm.type not in VALUE_TYPES:
            raise ConfigError(
                f"--map {fm.field}:{fm.type}: the type is one of {', '.join(VALUE_TYPES)}"
            )
        return
    if fm.field not in TOP_LEVEL_FIELDS:
        targets = ", ".join(("productId", *TOP_LEVEL_FIELDS, "data.<key>"))
        raise ConfigError(f"--map {fm.field}={fm.column}: unknown field; map one of {targets}")
    if fm.type is not None:
        raise ConfigError(f"--map {fm.field}:{fm.type}: only data.<key> fields take a type")


def _names() -> str:
    return ", ".join(repr(n) for n in EVENT_NAMES)
