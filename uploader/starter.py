"""`uploader init`: a commented TOML config from what an input's names and values show.

It resolves the mapping as a run would (mapping.resolve_mapping), settles what the names
leave open with the best candidate from the first rows (mapping.suggest), runs the offline
pipeline on those rows to see what it would make of them (timestamps, rejects, repeated
order rows), and writes every key `--config` reads: the ones it settled, with what was found
and why; the others commented out, with their default. Validating with the file gives the
plan the same flags would.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from uploader.config import RunConfig
from uploader.diagnosis import ColumnProfile, profile_columns
from uploader.inputs import resolve_inputs
from uploader.mapping import MappingPlan, Problem, resolve_mapping, suggest
from uploader.options import FieldMap, Options
from uploader.pipeline import plan_run
from uploader.read import read_sample
from uploader.repeats import ORDERED


@dataclass(frozen=True)
class Starter:
    """The config's text, and what is still to choose (each named in it with CHOOSE)."""

    text: str
    to_choose: tuple[str, ...]


def write_starter(config: RunConfig, argv: Sequence[str] = ()) -> Starter:
    source = config.inputs[0]
    options = config.mapping
    sample = read_sample(source)
    resolution = resolve_mapping(source.columns, options)
    problems = suggest(resolution, sample, options) if resolution.problems else ()
    chosen, why = _settle(options, problems)
    plan = resolve_mapping(source.columns, chosen).plan
    open_problems = [p for p in problems if not p.candidates]
    tally = None
    if not open_problems:
        as_seen = replace(chosen, duplicates=None, keep_duplicates=False)  # repeats counted
        tally = plan_run(resolve_inputs([sample]), as_seen)
    profiles = profile_columns(sample, chosen)
    writer = _Writer(chosen, plan, profiles, why)
    repeats = 0 if tally is None else int(tally.collapsed_by_code[ORDERED])
    writer.header(source.name, sample.num_rows, argv)
    writer.event(open_problems)
    writer.reading(tally, source.dialect)
    writer.duplicates(repeats, sample.num_rows)
    writer.rest()
    writer.mapping(open_problems)
    writer.event_map()
    to_choose = [p.field for p in open_problems]
    if chosen.duplicates is None and repeats:
        to_choose.append("duplicates")
    return Starter("\n".join(writer.lines) + "\n", tuple(to_choose))


def _settle(options: Options, problems: Sequence[Problem]) -> tuple[Options, dict[str, str]]:
    """The options with the best candidate of each problem taken; why, per field."""
    event_column = options.event_column
    mapping = list(options.mapping)
    why: dict[str, str] = {}
    for problem in problems:
        if not problem.candidates:
            continue
        best = problem.candidates[0]
        note = f"suggested from its values: {best.found}, e.g. {best.example!r}"
        if problem.field == "event":
            event_column = best.column
            why["event"] = note
            continue
        field = {"identity": "userId", "productId": "data.productId"}.get(
            problem.field, problem.field
        )
        mapping = [m for m in mapping if m.field != field]
        mapping.append(FieldMap(field, best.column))
        why[field] = note
    return replace(options, event_column=event_column, mapping=tuple(mapping)), why


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON one


class _Writer:
    def __init__(
        self,
        options: Options,
        plan: MappingPlan,
        profiles: dict[str, ColumnProfile],
        why: dict[str, str],
    ) -> None:
        self.options, self.plan, self.profiles, self.why = options, plan, profiles, why
        self.lines: list[str] = []
        self.written: set[str] = set()

    def key(self, name: str, value: Any, comment: str = "", *, active: bool = True) -> None:
        self.written.add(name)
        line = f"{'' if active else '# '}{name} = {_toml(value)}"
        self.lines.append(f"{line}  # {comment}" if comment else line)

    def say(self, *text: str) -> None:
        self.lines.extend(f"# {t}" if t else "" for t in text)

    def example(self, column: str) -> str:
        profile = self.profiles.get(column)
        return "" if profile is None or not profile.values else f"e.g. {profile.example!r}"

    def header(self, name: str, rows: int, argv: Sequence[str]) -> None:
        command = shlex.join(["uploader", "init", *argv])
        self.say(
            f"Written by `{command}`,",
            f"from {os.path.basename(name)} ({rows:,} rows looked at). Check it, then:",
            f"  uploader validate {name} --config THIS_FILE",
            "Every key is the flag of the same name (event_column is --event-column); a flag",
            "given with --config wins over the key. Keys commented out hold their default.",
        )
        self.lines.append("")

    def event(self, open_problems: Sequence[Problem]) -> None:
        options, plan = self.options, self.plan
        self.say("The event: every row is one event (event), or a column holds it.")
        missing = any(p.field == "event" for p in open_problems)
        if options.event is not None:
            self.key("event", options.event, "given")
        else:
            comment = (
                "CHOOSE: no column holds event names; Product viewed, Added to cart, "
                "Removed from cart or Product ordered"
                if missing
                else "or set event_column"
            )
            self.key("event", "Product ordered", comment, active=False)
        if plan.event_column is not None:
            how = self.why.get("event", "given" if options.event_column else "found by its name")
            self.key("event_column", plan.event_column, how)
        else:
            self.key("event_column", "COLUMN", "instead of event", active=False)
        self.lines.append("")

    def mapping(self, open_problems: Sequence[Problem]) -> None:
        self.say("Which column fills which field (the --map flags); unmapped columns are not sent.")
        self.lines.append("[map]")
        self.written.add("mapping")
        for fp in self.plan.fields:
            key = "productId" if fp.path == "data.productId" else fp.path
            given = next((m for m in self.options.mapping if m.field == fp.path), None)
            if given is not None and given.type is not None:
                key = f"{key}:{given.type}"
            how = self.why.get(fp.path) or ("given" if given else "found by its name")
            if fp.path not in self.why:
                how = ", ".join(p for p in (how, self.example(fp.column)) if p)
            self.lines.append(f"{_toml(key)} = {_toml(fp.column)}  # {how}")
        for problem in open_problems:
            if problem.field != "event":
                self.say(f"CHOOSE: {problem.message}")
        for column in self.plan.ignored:
            profile = self.profiles.get(column)
            seen = "" if profile is None else f"{profile.distinct:,} distinct values, "
            self.say(
                f"not sent: {column} ({seen}{self.example(column)}); to send it, under [map]: "
                f'"data.KEY" = {_toml(column)}'
            )
        self.lines.append("")

    def reading(self, tally: Any, dialect: Any) -> None:
        options = self.options
        top: list[str] = []
        if tally is not None and tally.timestamps:
            read = "; ".join(f"{how}" for how in tally.timestamps)
            top.append(f"# The timestamps were read as: {read}.")
        zone_note = "the zone of timestamps written without one: say theirs"
        top.append(f"timezone = {_toml(options.timezone)}  # {zone_note}")
        for name, default, note in (
            ("timestamp_unit", options.timestamp_unit, "epoch numbers' unit: s, ms, us, ns"),
            ("timestamp_format", options.timestamp_format, "strptime layout of other text"),
        ):
            top.append(f"{name} = {_toml(default)}" if default else f'# {name} = ""  # {note}')
        top.append(
            f"no_timestamp = {_toml(options.no_timestamp)}  # true: send without timestamps"
            if options.no_timestamp
            else "# no_timestamp = false  # true: the API stamps the upload time (not history)"
        )
        if dialect is not None:
            top.append(
                f"encoding = {_toml(options.encoding)}  # of CSV files (a byte order mark wins)"
            )
            found = f"delimiter = {_toml(dialect.delimiter)}  # {dialect.describe()}"
            top.append(found if options.delimiter is not None else f"# {found}")
        else:
            top.append(f"# encoding = {_toml(options.encoding)}  # of CSV files")
            top.append('# delimiter = ","  # of CSV files')
        top.append(f"decimal = {_toml(options.decimal)}  # the decimal mark of numbers as text")
        self.written.update({"timezone", "timestamp_unit", "timestamp_format", "no_timestamp",
                             "encoding", "delimiter", "decimal"})  # fmt: skip
        self.lines.extend([*top, ""])

    def duplicates(self, repeats: int, rows: int) -> None:
        options = self.options
        may_order = self.plan.event == "Product ordered" or self.plan.event_column is not None
        text = [
            "What repeated identical rows become: collapse (one event), keep (one each, ids",
            "numbered by occurrence) or quantity (one, data.quantity their number or sum).",
        ]
        if options.duplicates is not None:
            line = f"duplicates = {_toml(options.duplicates)}  # given"
        elif repeats:
            text.append(
                f"CHOOSE: in the first {rows:,} rows, {repeats:,} 'Product ordered' rows repeat an "
                "earlier row exactly: an upload sends nothing until this says what they are."
            )
            line = '# duplicates = "collapse"'
        elif may_order:
            text.append(
                "No order row repeats in the rows looked at; if some do later, an upload stops "
                "until this is set."
            )
            line = '# duplicates = "collapse"'
        else:
            line = '# duplicates = "collapse"  # the default for these events'
        self.written.update({"duplicates", "keep_duplicates"})
        self.say(*text)
        self.lines.append(line)
        self.say('keep_duplicates = false  # true: the older way to say duplicates = "keep"')
        self.lines.append("")

    def rest(self) -> None:
        options = self.options
        top = []
        if options.catalog is not None:
            top.append(f"catalog = {_toml(options.catalog)}  # every productId must be in it")
        else:
            top.append(
                '# catalog = "catalog.csv:product_id"  # a catalogue the productIds must be in'
            )
        top.append(f"catalog_mode = {_toml(options.catalog_mode)}  # reject or warn")
        top.append(f"batch_size = {options.batch_size}  # events per request")
        top.append(f"max_request_bytes = {options.max_request_bytes}")
        self.written.update({"catalog", "catalog_mode", "batch_size", "max_request_bytes"})
        self.lines.extend([*top, ""])

    def event_map(self) -> None:
        self.lines.append("")
        self.lines.append("[event_map]")
        self.written.add("event_map")
        self.say('raw event value = event name, or "ignore" (the --event-map flags)')
        for raw, name in self.options.event_map:
            self.lines.append(f"{_toml(raw)} = {_toml(name)}")
        column = self.plan.event_column
        profile = None if column is None else self.profiles.get(column)
        if profile is not None:
            from uploader.contract import canonical_event_name

            given = {raw for raw, _ in self.options.event_map}
            for value in profile.few_values:
                if value not in given and canonical_event_name(value) is None:
                    self.say(f'{_toml(value)} = "ignore"  # CHECK: not an event name; or map it')
        missing = {f.name for f in fields(Options)} - self.written
        assert not missing, f"init does not write {missing}"
