"""The original system's encodings, as its Rust source writes them (``shared/seed/seed-schema.md``,
"How values are encoded"): one place that reads and writes them for the importer, the analysis and
the generator of test databases.

* the compressed envelope ``__compressed__:<lz4|zstd|gzip>:<original size>\\n<base64>``: ``zstd``
  a zstd frame, ``lz4`` an LZ4 *block* with neither frame nor size prefix (``lz4_flex::compress``),
  ``gzip`` a gzip stream;
* chrono's RFC 3339 timestamps in UTC with 0 to 9 fractional digits (``2026-01-05T14:03:07Z``,
  ``...:07.5Z``, ``...:07.123456789Z``);
* Rust's ``Debug`` output (``format!("{:?}", pattern)`` is what the original stores as a pattern's
  "type"): ``Name { field: value, .. }``, ``Some(x)``/``None``, ``[a, b]``, ``"escaped"`` strings,
  and bare tokens (numbers, unit variants, UUIDs, durations, datetimes) kept as their text.
"""

from __future__ import annotations

import base64
import gzip
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import zstandard

from tiered.errors import ConfigError, CorruptPayload

__all__ = [
    "ENVELOPE",
    "DebugStruct",
    "Envelope",
    "decode_envelope",
    "envelope",
    "format_rfc3339",
    "opened",
    "parse_debug",
    "parse_rfc3339",
    "rust_debug_str",
]

ENVELOPE = "__compressed__:"
Envelope = Literal["lz4", "zstd", "gzip"]


def decode_envelope(text: str) -> bytes:
    """The original bytes of an envelope; :class:`CorruptPayload` when it is malformed, names an
    unknown codec, does not decompress, or does not hold the size it declares."""
    head, sep, body = text.partition("\n")
    parts = head.split(":")
    if not sep or len(parts) != 3 or parts[0] != "__compressed__":
        raise CorruptPayload("not a compressed envelope (__compressed__:<algo>:<size>\\n<data>)")
    algo, size_text = parts[1], parts[2]
    try:
        size = int(size_text)
        packed = base64.b64decode(body, validate=True)
    except ValueError as e:
        raise CorruptPayload(f"compressed envelope: {e}") from e
    if size < 0:
        raise CorruptPayload(f"compressed envelope declares {size} bytes")
    try:
        if algo == "zstd":
            raw = zstandard.ZstdDecompressor().decompress(packed, max_output_size=max(size, 1))
        elif algo == "gzip":
            raw = gzip.decompress(packed)
        elif algo == "lz4":
            try:
                import lz4.block
            except ModuleNotFoundError as e:  # a missing library, not a corrupt payload
                raise ConfigError(
                    "the original's lz4 envelopes need lz4: pip install 'tiered[analysis]'"
                ) from e

            # lz4_flex::compress: a bare block; its size travels only in the envelope
            raw = lz4.block.decompress(packed, uncompressed_size=size) if size else b""
        else:
            raise CorruptPayload(f"compressed envelope names an unknown codec {algo!r}")
    except (CorruptPayload, ConfigError):
        raise
    except Exception as e:  # each library has its own error types
        raise CorruptPayload(f"compressed envelope ({algo}) does not decompress: {e}") from e
    if len(raw) != size:
        raise CorruptPayload(f"compressed envelope declares {size} bytes but holds {len(raw)}")
    return raw


def opened(text: str) -> str | bytes:
    """``text`` itself, or the bytes it stands for when it is a compressed envelope."""
    return decode_envelope(text) if text.startswith(ENVELOPE) else text


def envelope(data: bytes, algo: Envelope = "zstd") -> str:
    """``data`` in the original's envelope, compressed as the original compresses it."""
    if algo == "zstd":
        packed = zstandard.ZstdCompressor(level=3).compress(data)  # zstd's level 0 = default 3
    elif algo == "gzip":
        packed = gzip.compress(data, mtime=0)
    elif algo == "lz4":
        import lz4.block

        packed = lz4.block.compress(data, store_size=False)
    else:
        raise ConfigError(f"unknown envelope codec {algo!r}: use lz4, zstd or gzip")
    return f"__compressed__:{algo}:{len(data)}\n{base64.b64encode(packed).decode()}"


# -- RFC 3339 (chrono's DateTime<Utc> through serde) ----------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$"
)


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (0 to 9 fractional digits, ``Z`` or
    an offset); :class:`CorruptPayload` for anything else."""
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        raise CorruptPayload(f"not an RFC 3339 timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8)
    try:
        whole = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError as e:
        raise CorruptPayload(f"not an RFC 3339 timestamp: {text!r} ({e})") from e
    offset = 0
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    seconds = int(whole.timestamp()) - offset
    return seconds * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def format_rfc3339(nanos: int, digits: int | None = None) -> str:
    """``nanos`` since the epoch as chrono writes it: UTC, ``Z``, and ``digits`` fractional
    digits (``None``: chrono's own choice of 0, 3, 6 or 9, the fewest that hold the value)."""
    seconds, frac = divmod(nanos, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits is None:
        digits = next(d for d in (0, 3, 6, 9) if frac % 10 ** (9 - d) == 0)
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    return text + "Z"


# -- Rust's Debug output ------------------------------------------------------------------------


@dataclass(frozen=True)
class DebugStruct:
    """``Name { a: .., b: .. }`` (``fields``) or ``Name(..)`` (``items``) in Rust's Debug."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    items: tuple[Any, ...] = ()


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
_BARE_END = frozenset(",}])")


def parse_debug(text: str) -> Any:
    """The value of Rust ``{:?}`` text: :class:`DebugStruct`, ``list``, ``str`` (a quoted
    string, unescaped), ``None`` (``None``), or the raw text of a bare token (``0.8``, ``1.2s``,
    ``Moderate``, a UUID). :class:`CorruptPayload` when it is not well formed (a dump cut short,
    for example)."""
    parser = _DebugParser(text)
    value = parser.value()
    parser.space()
    if parser.i != len(text):
        raise CorruptPayload(f"Debug text has more after its value at {parser.i}")
    return value


class _DebugParser:
    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def fail(self, what: str) -> CorruptPayload:
        return CorruptPayload(f"not Rust Debug text: {what} at character {self.i}")

    def space(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.space()
        return self.text[self.i] if self.i < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.i += 1

    def value(self) -> Any:
        ch = self.peek()
        if ch == "":
            raise self.fail("unexpected end")
        if ch == '"':
            return self.string()
        if ch == "[":
            self.i += 1
            return self.sequence("]")
        token = self.bare()
        nxt = self.peek()
        if token and (token[0].isalpha() or token[0] == "_") and nxt == "{":
            self.i += 1
            fields: dict[str, Any] = {}
            while self.peek() != "}":
                name = self.bare()
                if not name or self.peek() != ":":
                    raise self.fail("expected a field name and ':'")
                self.i += 1
                fields[name] = self.value()
                if self.peek() == ",":
                    self.i += 1
            self.i += 1
            return DebugStruct(token, fields)
        if token and token[0].isalpha() and nxt == "(":
            self.i += 1
            items = tuple(self.sequence(")"))
            return None if token == "None" else DebugStruct(token, items=items)
        if not token:
            raise self.fail(f"unexpected {ch!r}")
        return None if token == "None" else token

    def sequence(self, close: str) -> list[Any]:
        out: list[Any] = []
        while self.peek() != close:
            out.append(self.value())
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != close:
                raise self.fail(f"expected ',' or {close!r}")
        self.i += 1
        return out

    def bare(self) -> str:
        """A token up to the next delimiter (a ``:`` ends it only before a space: ``12:30``
        in a datetime stays inside, ``name: value`` ends at the name)."""
        self.space()
        start, text = self.i, self.text
        while self.i < len(text):
            c = text[self.i]
            if c in _BARE_END or c.isspace() or c in '{("[':
                break
            if c == ":" and (self.i + 1 >= len(text) or text[self.i + 1].isspace()):
                break
            self.i += 1
        return text[start : self.i]

    def string(self) -> str:
        self.i += 1  # the opening quote
        out: list[str] = []
        text = self.text
        while True:
            if self.i >= len(text):
                raise self.fail("unterminated string")
            c = text[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                e = text[self.i + 1 : self.i + 2]
                if e == "u" and text[self.i + 2 : self.i + 3] == "{":
                    end = text.find("}", self.i + 3)
                    if end < 0:
                        raise self.fail("unterminated \\u{...}")
                    try:
                        out.append(chr(int(text[self.i + 3 : end], 16)))
                    except ValueError as err:
                        raise self.fail("bad \\u{...}") from err
                    self.i = end + 1
                    continue
                if e not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{e}")
                out.append(_ESCAPES[e])
                self.i += 2
                continue
            out.append(c)
            self.i += 1


def rust_debug_str(s: str) -> str:
    """``s`` as Rust's ``{:?}`` prints a string (``str::escape_debug``: quotes, backslashes,
    ``\\t \\r \\n``, and ``\\u{..}`` for control characters)."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\0":
            out.append("\\0")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)
