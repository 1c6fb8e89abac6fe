"""Validation rules shared by the domain records and every Store argument.

Each check returns the value (converted where documented) or raises
:class:`~tiered.errors.ValidationError` naming the field and saying what is allowed. The
records in :mod:`tiered.model` validate their fields with these at construction, and the Store
validates query arguments with the same rules, so a value a record would reject is rejected as
an argument too (on every backend, before any I/O).
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeAlias

from tiered.errors import ValidationError

__all__ = [
    "MAX_ID_LEN",
    "MAX_MICROS",
    "MAX_NAME_LEN",
    "MAX_VECTOR_DIM",
    "JSONValue",
    "check_count",
    "check_id",
    "check_json",
    "check_metadata_key",
    "check_micros",
    "check_number",
    "check_opt_text",
    "check_text",
    "check_texts",
    "check_vector",
    "from_micros",
    "to_micros",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

#: Largest timestamp accepted: 9999-12-31T23:59:59.999999Z in microseconds.
MAX_MICROS = 253_402_300_799_999_999
MAX_ID_LEN = 256
MAX_NAME_LEN = 128
MAX_VECTOR_DIM = 65_536
# Metadata keys are names, not data: letters, digits, "_", ".", ":", "/" and single hyphens.
# Quotes, "%", whitespace and "--" are rejected so that a key can never look like SQL or a
# LIKE pattern anywhere it is shown. Values are arbitrary text, always bound as parameters.
_METADATA_KEY = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.:/]|-(?!-))*\Z")


def to_micros(t: datetime) -> int:
    """Microseconds since the epoch for an aware datetime (naive datetimes are rejected)."""
    if t.tzinfo is None:
        raise ValidationError("timestamp", "naive datetime; pass an aware datetime (UTC)")
    delta = t.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    """Aware UTC datetime for microseconds since the epoch."""
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


# ---------------------------------------------------------------------------------------------
# validation helpers: each names the field and says what is allowed
# ---------------------------------------------------------------------------------------------


def _encodable(name: str, value: str) -> None:
    """Reject a string UTF-8 cannot encode (a lone surrogate such as ``"\\udc80"``, which
    Python strings may hold but no database, JSON encoder or server accepts)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValidationError(
                name, f"must be valid Unicode text: character {e.start} is a lone surrogate"
            ) from None


def _text(name: str, value: object, *, max_len: int | None = None, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, got {type(value).__name__}")
    if not empty and (not value or value.isspace()):  # (no copy, unlike strip())
        raise ValidationError(name, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters, got {len(value)}")
    if "\x00" in value:
        raise ValidationError(name, "must not contain NUL characters")
    _encodable(name, value)
    return value


def check_text(name: str, value: object, *, max_len: int | None = None, empty: bool = False) -> str:
    """``value`` if it is a string a record may hold, else :class:`ValidationError` naming
    ``name``: not empty or blank (unless ``empty``), at most ``max_len`` characters, no NUL,
    encodable as UTF-8. The Store validates query arguments with the same rules as records."""
    return _text(name, value, max_len=max_len, empty=empty)


def check_id(name: str, value: object) -> str:
    """``value`` if it is a valid record id (see :func:`check_text`; at most
    :data:`MAX_ID_LEN` characters), else :class:`ValidationError` naming ``name``."""
    # the hot path of every cached read: plain ASCII ids, checked without the general rules
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LEN
        and value.isascii()
        and "\x00" not in value
        and not value.isspace()
    ):
        return value
    return _text(name, value, max_len=MAX_ID_LEN)


def check_metadata_key(name: str, value: object) -> str:
    """``value`` if it is a valid metadata key, else :class:`ValidationError` naming ``name``.

    Keys are names: 1-128 letters, digits, ``_ . : /`` and single hyphens."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LEN or not _METADATA_KEY.match(value):
        raise ValidationError(
            name,
            f"key {value!r} is not a name: use 1-{MAX_NAME_LEN} letters, digits, "
            "'_', '.', ':', '/' and single hyphens",
        )
    return value


def check_opt_text(name: str, value: object, *, max_len: int | None = None) -> str | None:
    return None if value is None else _text(name, value, max_len=max_len)


def check_texts(name: str, values: object, *, max_len: int | None = None) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(name, "must be a sequence of strings")
    return tuple(_text(f"{name}[{i}]", v, max_len=max_len) for i, v in enumerate(values))


def check_number(
    name: str, value: object, *, lo: float | None = None, hi: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValidationError(name, "must be finite")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValidationError(name, f"must be within [{lo}, {hi}], got {v}")
    return v


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
    if value < 0 or value > 2**62:
        raise ValidationError(name, f"must be within [0, 2**62], got {value}")
    return value


def check_micros(name: str, value: object) -> int:
    """``value`` (integer microseconds since the epoch, or an aware datetime) as microseconds
    within [0, :data:`MAX_MICROS`], else :class:`ValidationError` naming ``name``."""
    if isinstance(value, datetime):
        value = to_micros(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, "must be integer microseconds since the epoch or a datetime")
    if not 0 <= value <= MAX_MICROS:
        raise ValidationError(name, f"must be within [0, {MAX_MICROS}] microseconds, got {value}")
    return value


def check_json(name: str, value: object, depth: int = 0) -> JSONValue:
    """Validate a JSON-compatible value (finite floats, string keys, bounded nesting).

    The walk builds no field names while it succeeds (it runs on every step of every episode);
    a problem names its field (``name.key[2]``) on the way out."""
    try:
        return _walk(value, depth)
    except _Problem as p:
        raise ValidationError(name + "".join(reversed(p.path)), p.message) from None


class _Problem(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        self.path: list[str] = []


def _walk(value: object, depth: int) -> JSONValue:
    if depth > 32:
        raise _Problem("nested deeper than 32 levels")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise _Problem("must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise _Problem(
                    f"must be valid Unicode text: character {e.start} is a lone surrogate"
                ) from None
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Problem("floats must be finite")
        return value
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Problem(f"keys must be strings, got {type(k).__name__}")
            if not k.isascii():
                try:
                    _encodable("key", k)
                except ValidationError as e:
                    problem = _Problem(e.message)
                    problem.path.append(" key")  # named "<field> key", as before
                    raise problem from None
            try:
                out[k] = _walk(v, depth + 1)
            except _Problem as p:
                p.path.append(f".{k}")
                raise
        return out
    if isinstance(value, list | tuple):
        items: list[JSONValue] = []
        for i, v in enumerate(value):
            try:
                items.append(_walk(v, depth + 1))
            except _Problem as p:
                p.path.append(f"[{i}]")
                raise
        return items
    raise _Problem(f"must be JSON-compatible, got {type(value).__name__}")


def check_vector(name: str, values: object) -> array[float]:
    """``values`` as a float32 ``array('f')`` (1..65536 finite numbers), else
    :class:`ValidationError` naming ``name``."""
    if isinstance(values, array) and values.typecode == "f":
        vec = array("f", values)
    else:
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | Iterable):
            raise ValidationError(name, "must be a sequence of floats")
        try:
            vec = array("f", [float(x) for x in values])
        except (TypeError, ValueError, OverflowError):
            raise ValidationError(name, "must contain only numbers") from None
    if not 1 <= len(vec) <= MAX_VECTOR_DIM:
        raise ValidationError(
            name, f"dimension must be within [1, {MAX_VECTOR_DIM}], got {len(vec)}"
        )
    for x in vec:
        if not math.isfinite(x):
            raise ValidationError(name, "values must be finite float32")
    return vec
