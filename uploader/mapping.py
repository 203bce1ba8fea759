"""Map stage, first half: decide which column fills which payload field, before any row is
read (convert.py then converts each chunk's columns).

Detection compares normalised column names (lowercase, letters and digits only) with a
table of common names per field. What cannot be decided that way (a required field with no
column, a field two columns could fill, a --map to a column that is not there) is gathered,
every problem of an input at once; only then are some of its rows looked at (diagnosis.py)
to name the columns whose values could fill each field, with the flag that maps them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from uploader.contract import EVENT_NAMES
from uploader.diagnosis import Candidate, profile_columns, rank_candidates
from uploader.errors import InputError
from uploader.options import Options


@dataclass(frozen=True)
class Target:
    path: str  # where the value goes in an item: "userId", "data.productId", …
    kind: str  # "id", "string", "integer", "number", "boolean" or "timestamp"
    aliases: tuple[str, ...] = ()  # normalised column names detected as this field


TARGETS = (
    Target(
        "data.productId",
        "id",
        ("productid", "product", "sku", "productsku", "itemid", "item", "stockcode", "variantid"),
    ),
    Target(
        "userId",
        "id",
        ("userid", "user", "customerid", "customer", "visitorid", "clientid", "email"),
    ),
    Target("profileId", "id", ("profileid",)),
    Target("anotherUserId", "id", ("anotheruserid",)),
    Target("accountId", "id", ("accountid",)),
    Target("sessionId", "id"),
    Target("eventId", "id", ("eventid",)),
    Target(
        "timestamp",
        "timestamp",
        (
            "timestamp", "eventtime", "eventtimestamp", "time", "ts", "datetime", "date",
            "createdat", "occurredat", "invoicedate", "orderdate", "eventdate",
        ),
    ),
    Target("data.quantity", "integer", ("quantity", "qty")),
    Target("data.price", "number", ("price", "unitprice")),
    Target("data.currency", "string", ("currency", "currencycode")),
    Target(
        "data.orderId",
        "id",
        (
            "orderid", "orderno", "invoiceno", "invoice", "invoicenumber", "ordernumber",
            "transactionid",
        ),
    ),
)  # fmt: skip
EVENT_COLUMN_ALIASES = ("eventtype", "event", "eventname", "type", "action", "interactiontype")
# data.<key> types when the mapping does not say: amounts are numbers, *Id keys are ids.
NUMBER_KEYS = ("price", "value", "amount", "revenue", "total", "discount", "tax", "shipping")


# The columns a rejects file starts with (sinks.RejectsWriter): an earlier run's notes on
# each row, not the row's own values. A file that starts with them is read as a fixed
# rejects file: these columns are not mapped and not sent.
REJECT_NOTES = ("file", "row", "field", "reason")
# What a missing required field is called in messages, in the order they are reported.
REQUIRED = ("event", "productId", "identity", "timestamp")
IDENTITIES = ("userId", "profileId", "accountId")


@dataclass(frozen=True)
class FieldPlan:
    path: str
    column: str
    kind: str
    detected: bool  # found by name, not given with --map


@dataclass(frozen=True)
class MappingPlan:
    """How one set of columns becomes items."""

    event: str | None  # the same event for every row, or None: read from event_column
    event_column: str | None
    event_map: tuple[tuple[str, str], ...]
    fields: tuple[FieldPlan, ...]
    ignored: tuple[str, ...]  # columns that are not sent
    notes: tuple[str, ...] = ()  # a rejects file's file, row, field, reason: not sent

    def column_of(self, path: str) -> str | None:
        return next((f.column for f in self.fields if f.path == path), None)


@dataclass(frozen=True)
class Problem:
    """One thing that stops the mapping, in the words of its error, and the columns whose
    values could settle it (when rows were looked at)."""

    field: str  # "event", "productId", "identity", "timestamp", a field path, or a flag
    message: str
    candidates: tuple[Candidate, ...] = ()
    looked: bool = False  # rows were looked at for candidates


@dataclass(frozen=True)
class Resolution:
    """What the names decide: the plan as far as it goes, and what stops it."""

    plan: MappingPlan
    problems: tuple[Problem, ...]
    ambiguous: dict[str, tuple[str, ...]]  # problem field -> the columns that match it


def normalise_name(column: str) -> str:
    return re.sub(r"[^a-z0-9]", "", column.lower())


def plan_mapping(
    columns: Sequence[str],
    options: Options,
    source_name: str,
    sample: Callable[[], pa.Table | None] | None = None,
) -> MappingPlan:
    """Resolve every field to a column, or raise one InputError that names every problem.
    `sample` gives some of the input's rows: it is called only when there is a problem, to
    suggest the columns whose values could settle it."""
    resolution = resolve_mapping(columns, options)
    if not resolution.problems:
        return resolution.plan
    table = sample() if sample is not None else None
    problems = resolution.problems if table is None else suggest(resolution, table, options)
    raise InputError(describe_problems(source_name, problems, None if table is None else table))


def resolve_mapping(columns: Sequence[str], options: Options) -> Resolution:
    """Every field that names decide, and every problem they leave, in one pass."""
    notes = REJECT_NOTES if tuple(columns[:4]) == REJECT_NOTES else ()
    by_norm: dict[str, list[str]] = {}
    for column in columns:
        if column not in notes:
            by_norm.setdefault(normalise_name(column), []).append(column)
    used: set[str] = set(notes)
    plans: list[FieldPlan] = []
    problems: list[Problem] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()  # fields a problem is about already: not reported missing

    def detect(aliases: Sequence[str], label: str, flag: str) -> str | None:
        found = [c for alias in aliases for c in by_norm.get(alias, []) if c not in used]
        if len(found) > 1:
            what = "the event" if label == "event" else label
            listed = ", ".join(repr(c) for c in found)
            message = f"{what} could come from any of the columns {listed}; choose one with {flag}"
            problems.append(Problem(label, message))
            ambiguous[label] = tuple(found)
            claimed.add(_path_of(label))
            used.update(found)
            return None
        return found[0] if found else None

    for fm in options.mapping:
        flag = f"--map {fm.field}={fm.column}"
        missing = _missing_column(fm.column, columns, flag)
        if missing is not None:
            problems.append(Problem(flag, missing))
            claimed.add(fm.field)
            continue
        plans.append(FieldPlan(fm.field, fm.column, _kind_of(fm.field, fm.type), False))
        used.add(fm.column)

    event: str | None = options.event
    event_column: str | None = options.event_column
    if event_column is not None:
        missing = _missing_column(event_column, columns, f"--event-column {event_column}")
        if missing is not None:
            problems.append(Problem(f"--event-column {event_column}", missing))
            event_column = None
    elif event is None:
        event_column = detect(EVENT_COLUMN_ALIASES, "event", "--event-column COL")
        if event_column is None and "event" not in ambiguous:
            problems.append(Problem("event", NO_EVENT))
    if event_column is not None:
        used.add(event_column)

    mapped = {p.path for p in plans} | claimed
    for target in TARGETS:
        if target.path in mapped or not target.aliases:
            continue
        if target.path == "timestamp" and options.no_timestamp:
            continue
        label = _flag_name(target.path)
        found = detect(target.aliases, label, f"--map {label}=COL")
        if found is not None:
            plans.append(FieldPlan(target.path, found, target.kind, True))
            used.add(found)

    plan = MappingPlan(
        event=event,
        event_column=event_column,
        event_map=options.event_map,
        fields=tuple(plans),
        ignored=tuple(c for c in columns if c not in used),
        notes=notes,
    )
    problems.extend(_missing_fields(plan, options, columns, claimed))
    return Resolution(plan, tuple(sorted(problems, key=_order)), ambiguous)


def _order(problem: Problem) -> int:
    return REQUIRED.index(problem.field) + 1 if problem.field in REQUIRED else 0


NO_EVENT = (
    "no event column found (looked for event_type, event, event_name, type, action). Give "
    "--event-column COL, or --event NAME when every row is the same event (an orders table: "
    f"--event 'Product ordered'); names: {', '.join(repr(n) for n in EVENT_NAMES)}"
)


def _missing_fields(
    plan: MappingPlan, options: Options, columns: Sequence[str], given: set[str]
) -> list[Problem]:
    paths = {p.path for p in plan.fields} | given
    listing = ", ".join(repr(c) for c in columns)
    problems = []
    if "data.productId" not in paths:
        problems.append(
            Problem(
                "productId",
                "no column for productId (looked for product_id, sku, item_id, stock_code…); "
                f"give --map productId=COL. The columns are {listing}",
            )
        )
    if not paths & set(IDENTITIES):
        problems.append(
            Problem(
                "identity",
                "no identity column (looked for user_id, customer_id, visitor_id, email, "
                "profile_id, account_id); give --map userId=COL (or profileId / accountId). "
                f"The columns are {listing}",
            )
        )
    if "timestamp" not in paths and not options.no_timestamp:
        problems.append(
            Problem(
                "timestamp",
                "no timestamp column (looked for timestamp, event_time, date, created_at, "
                "invoice_date…); give --map timestamp=COL. Without a timestamp the API stamps "
                "the upload time, turning history into today's events: pass --no-timestamp "
                "only if that is what you want",
            )
        )
    return problems


def suggest(resolution: Resolution, table: pa.Table, options: Options) -> tuple[Problem, ...]:
    """The problems with the columns whose values (in `table`, some of the input's rows)
    could settle them. A column is suggested for one field only: the best fit first."""
    plan = resolution.plan
    taken = {f.column for f in plan.fields} | set(plan.notes)
    if plan.event_column is not None:
        taken.add(plan.event_column)
    profiles = profile_columns(table, options)
    out = []
    for problem in resolution.problems:
        columns = resolution.ambiguous.get(problem.field)
        kind = "identity" if problem.field in IDENTITIES else problem.field
        flag = _FLAGS.get(problem.field, f"--map {problem.field}={{}}")
        if columns is not None:
            found = rank_candidates(kind, profiles, flag, only=columns)
        elif problem.field in REQUIRED:
            found = rank_candidates(kind, profiles, flag, exclude=taken)
        else:
            found = ()
        if found and columns is None:
            taken.add(found[0].column)
        out.append(replace(problem, candidates=found, looked=True))
    return tuple(out)


# The flag that maps a candidate column to what a problem is about.
_FLAGS = {
    "event": "--event-column {}",
    "productId": "--map productId={}",
    "identity": "--map userId={}",
    "timestamp": "--map timestamp={}",
}


# Candidates listed under each problem.
CANDIDATES_SHOWN = 3


def describe_problems(
    source_name: str, problems: Sequence[Problem], sample: pa.Table | None
) -> str:
    """One message for every problem: alone, in the words it always had, its candidates
    below; several, as a list, then every best candidate's flag on one line."""
    if len(problems) == 1:
        return f"{source_name}: " + "\n".join(_lines(problems[0]))
    looked = f" (candidates from its first {sample.num_rows:,} rows)" if sample is not None else ""
    lines = [f"{source_name}: {len(problems)} mapping problems{looked}:"]
    for problem in problems:
        first, *rest = _lines(problem)
        lines.extend([f"- {first}", *rest])
    best = [p.candidates[0].flag for p in problems if p.candidates]
    if best and any(p.field == "event" and not p.candidates for p in problems):
        best.insert(0, "--event NAME")
    if len(best) > 1:
        lines.append(f"All at once: {' '.join(best)}")
    return "\n".join(lines)


def _lines(problem: Problem) -> list[str]:
    lines = [problem.message]
    lines.extend(f"    {c.describe()}" for c in problem.candidates[:CANDIDATES_SHOWN])
    if problem.looked and not problem.candidates and problem.field in REQUIRED:
        lines.append(f"    {_NONE_FOUND[problem.field]}")
    return lines


_NONE_FOUND = {
    "event": "no column's values look like event names (view, cart, purchase…): "
    "every row is then one event (--event NAME)",
    "productId": "no column's values look like ids (many distinct values, no spaces, one shape)",
    "identity": "no column's values look like ids (many distinct values, no spaces, one shape)",
    "timestamp": "no column's values read as dates or epoch numbers in 2010-2039",
}


def _kind_of(path: str, given: str | None) -> str:
    if given is not None:
        return given
    target = next((t for t in TARGETS if t.path == path), None)
    if target is not None:
        return target.kind
    key = path.removeprefix("data.")
    if key in NUMBER_KEYS:
        return "number"
    return "id" if key.endswith(("Id", "ID", "_id")) else "string"


def _missing_column(column: str, columns: Sequence[str], flag: str) -> str | None:
    if column in columns:
        return None
    close = [c for c in columns if normalise_name(c) == normalise_name(column)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{flag}: no column {column!r}{hint}; the columns are {', '.join(map(repr, columns))}"


def _flag_name(path: str) -> str:
    return "productId" if path == "data.productId" else path


def _path_of(label: str) -> str:
    return "data.productId" if label == "productId" else label
