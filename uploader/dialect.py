"""How a CSV file's bytes become the text the parser reads: the encoding (a byte order mark
wins), bad bytes located, and the delimiter (given, or sniffed from the header line).

pyarrow's CSV parser reads UTF-8 only. Its own transcoding (`ReadOptions(encoding=...)`)
decodes strictly but reports no position, and UTF-8 input is not checked at all on the way
in: a bad byte surfaces later as "invalid UTF8 data" with no position, or inside the
invalid-row handler as an unraisable UnicodeDecodeError that Python prints as a traceback.
So `DecodedText` decodes here instead, block by block (memory stays bounded), and hands the
parser UTF-8 that is known to be valid.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from uploader.errors import InputError, said

DEFAULT_ENCODING = "utf-8"
# Delimiters recognised in a header line, in order of preference when the counts tie.
SNIFFED_DELIMITERS = (",", ";", "\t", "|")
# Decoded bytes looked at to find the header line: far more than any real header.
HEADER_PEEK = 1 << 16
# Byte order marks and what they say, longest first (none is a prefix of a later one).
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_ENCODING_HINT = (
    "if the file is text in another encoding, give it with --encoding "
    "(e.g. --encoding cp1252 for Excel on Windows, --encoding utf-16)"
)


@dataclass(frozen=True)
class CsvOptions:
    """The dialect asked for: an encoding, and a delimiter or None to find one."""

    encoding: str = DEFAULT_ENCODING
    delimiter: str | None = None


@dataclass(frozen=True)
class CsvDialect:
    """How one CSV file was read: what the plan reports about it."""

    encoding: str = DEFAULT_ENCODING  # Python's name for it: utf-8, cp1252, utf-16-le…
    delimiter: str = ","
    bom: bool = False  # the encoding came from a byte order mark
    sniffed: bool = False  # the delimiter was found in the header line, not given

    def describe(self) -> str:
        """`delimiter ';' (found in the header line), encoding utf-8 (byte order mark)`."""
        delimiter = delimiter_name(self.delimiter)
        if self.sniffed:
            delimiter += " (found in the header line)"
        encoding = self.encoding + (" (byte order mark)" if self.bom else "")
        return f"delimiter {delimiter}, encoding {encoding}"

    def to_json(self) -> dict[str, Any]:
        return {
            "delimiter": self.delimiter,
            "delimiter_sniffed": self.sniffed,
            "encoding": self.encoding,
            "byte_order_mark": self.bom,
        }


def delimiter_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def codec_name(encoding: str) -> str:
    """Python's canonical name of an encoding (`latin-1` -> `iso8859-1`); LookupError if
    Python does not know it."""
    return codecs.lookup(encoding).name


def sniff_delimiter(header: str) -> str | None:
    """The candidate delimiter that occurs most often outside quotes, or None."""
    counts = dict.fromkeys(SNIFFED_DELIMITERS, 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(SNIFFED_DELIMITERS, key=lambda d: counts[d])  # ties: the earlier one
    return best if counts[best] else None


def first_line(text: bytes) -> str:
    """The header line of decoded text (UTF-8 bytes), without its line break."""
    end = len(text)
    for brk in (b"\n", b"\r"):
        at = text.find(brk)
        if at != -1:
            end = min(end, at)
    return text[:end].decode("utf-8", "replace")


def read_header(
    text: DecodedText, given: CsvOptions, default_delimiter: str
) -> tuple[tuple[str, ...], CsvDialect]:
    """The column names and the dialect of a CSV file, from its head alone: a bad row
    further on is for the reader to report, and an object store gets one small read."""
    name = text.name
    head = text.peek(HEADER_PEEK)
    whole = len(head) < HEADER_PEEK
    head = head.lstrip(b"\r\n")
    if not head:
        raise InputError(f"{name}: the file is empty (no header line)")
    header = first_line(head)
    if "\x00" in header:
        raise InputError(
            f"{name}: the header line holds NUL bytes, so this is not {text.encoding} text: "
            "a binary file, or UTF-16 without a byte order mark (then give --encoding "
            "utf-16-le or utf-16-be)"
        )
    if not whole:  # whole lines only: a character cut in two would not be UTF-8
        cut = max(head.rfind(b"\n"), head.rfind(b"\r"))
        if cut == -1:
            raise InputError(
                f"{name}: no line break in the first {HEADER_PEEK >> 10} KiB, so no header "
                "line: this is not a CSV file"
            )
        head = head[: cut + 1]
    found = sniff_delimiter(header) if given.delimiter is None else None
    delimiter = given.delimiter or found or default_delimiter
    dialect = CsvDialect(text.encoding, delimiter, text.bom, sniffed=found is not None)
    try:  # pyarrow reads the names: quoting and all
        reader = pacsv.open_csv(
            pa.BufferReader(head),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=_skip_row
            ),
            convert_options=pacsv.ConvertOptions(column_types={}, strings_can_be_null=False),
        )
        return tuple(reader.schema.names), dialect
    except pa.ArrowInvalid as exc:
        raise InputError(f"{name}: not a readable CSV file ({said(exc)})") from exc


def _skip_row(row: pacsv.InvalidRow) -> str:
    return "skip"  # reported when the rows are read


class DecodedText(io.RawIOBase):
    """The UTF-8 text of a binary stream in `encoding`, read block by block.

    A byte order mark (UTF-8, UTF-16 LE or BE) wins over `encoding` and is dropped. A byte
    that is not valid in the encoding raises InputError naming its offset and line. At most
    `limit` bytes are read (a file that grows while it is read is read as it was found), and
    a last line without a line break gets one, so that the parser never sees a cut row."""

    def __init__(
        self,
        stream: Any,  # a pyarrow NativeFile (or any binary file object)
        name: str,
        encoding: str = DEFAULT_ENCODING,
        *,
        limit: int | None = None,
        decompressed: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.encoding = codec_name(encoding)
        self.bom = False
        self._stream = stream
        self._limit = limit
        self._decompressed = decompressed
        self._decoder: codecs.IncrementalDecoder | None = None
        self._offset = 0  # bytes of the stream consumed
        self._lines = 0  # line feeds decoded so far
        self._pending = b""  # decoded text not yet handed out
        self._eof = False
        self._emitted = False
        self._last = b"\n"  # last byte handed out

    def readable(self) -> bool:
        return True

    @property
    def consumed(self) -> int:
        """Bytes of the stream read so far (of the text, for a compressed file)."""
        return self._offset

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()

    def peek(self, size: int) -> bytes:
        """Up to `size` bytes of what `read` will return next, without consuming them."""
        while len(self._pending) < size and not self._eof:
            self._fill(size - len(self._pending))
        return self._pending[:size]

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(HEADER_PEEK):
                chunks.append(chunk)
            return b"".join(chunks)
        # Whole reads: pyarrow takes a short one for a block of its own, and cannot find the
        # header in a first block that ends before the header line does.
        while len(self._pending) < size and not self._eof:
            self._fill(size - len(self._pending))
        if len(self._pending) <= size:
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def _fill(self, size: int) -> None:
        want = max(size, 1)
        if self._limit is not None:
            want = min(want, self._limit - self._offset)
        try:
            raw = self._stream.read(want) if want > 0 else b""
        except OSError as exc:  # here, not in pyarrow: the same words wherever it reads
            raise self._unreadable(exc) from exc
        final = not raw
        if self._decoder is None:
            raw = self._start(raw)
        buffered = self._decoder_buffer()
        assert self._decoder is not None
        try:
            text = self._decoder.decode(raw, final)
        except UnicodeDecodeError as exc:
            raise self._error(exc, buffered) from None
        except UnicodeError as exc:  # no position: utf-16 without a byte order mark
            raise InputError(
                f"{self.name}: not valid {self.encoding} text ({exc}); {_ENCODING_HINT}, or "
                "utf-16-le / utf-16-be for UTF-16 without a byte order mark"
            ) from None
        self._offset += len(raw)
        self._lines += text.count("\n")
        out = raw if self.encoding == "utf-8" else text.encode("utf-8")
        if final:
            self._eof = True
            if self._emitted and self._last not in b"\r\n":
                out += b"\n"  # a last line without a line break
        if out:
            self._pending += out
            self._last = out[-1:]
            self._emitted = True

    def _start(self, raw: bytes) -> bytes:
        """Honour and drop a byte order mark, reading a little more to see one whole."""
        while raw and len(raw) < len(codecs.BOM_UTF8):
            room = len(codecs.BOM_UTF8) - len(raw)
            if self._limit is not None:
                room = min(room, self._limit - len(raw))
            more = self._stream.read(room) if room > 0 else b""
            if not more:
                break
            raw += more
        for mark, encoding in BOMS:
            if raw.startswith(mark):
                self.encoding, self.bom = encoding, True
                self._offset = len(mark)
                raw = raw[len(mark) :]
                break
        self._decoder = codecs.getincrementaldecoder(self.encoding)("strict")
        return raw

    def _decoder_buffer(self) -> bytes:
        assert self._decoder is not None
        state = self._decoder.getstate()
        return state[0] if isinstance(state[0], bytes) else b""

    def _unreadable(self, exc: OSError) -> InputError:
        where = f"byte offset {self._offset:,}"
        hint = ""
        if self._decompressed:
            where += " of the decompressed text"
            if "truncated" in str(exc).lower():
                hint = ": the compressed file is cut short; copy or download it again"
        return InputError(f"{self.name}: cannot read past {where} ({said(exc)}){hint}")

    def _error(self, exc: UnicodeDecodeError, buffered: bytes) -> InputError:
        data = bytes(exc.object)
        offset = self._offset - len(buffered) + exc.start
        line = self._lines + data[: exc.start].decode(self.encoding, "replace").count("\n") + 1
        bad = " ".join(f"{b:02x}" for b in data[exc.start : exc.end][:8])
        where = f"byte offset {offset:,}"
        if self._decompressed:
            where += " of the decompressed text"
        return InputError(
            f"{self.name}: not valid {self.encoding} text at {where} (line {line:,}): "
            f"bytes {bad} ({exc.reason}); {_ENCODING_HINT}"
        )
