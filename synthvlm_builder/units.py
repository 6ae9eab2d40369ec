"""Numbers a person types (command-line flags, environment variables), parsed strictly.

Only ASCII digits count. `str.isdigit()` accepts '²' (which `int()` then refuses) and `int()` accepts
'٣' (an Arabic-Indic three), so a value that looks like one number on screen could crash or mean another;
a value of thousands of digits would hit Python's int conversion limit. Every flag and environment
variable that holds a number goes through here, and a bad value is `InputError(field, ...)`: the CLI
prints `error: FIELD: message` and exits 2 before any work.
"""
from __future__ import annotations

import re

from .errors import InputError

MAX_INT = 2**63 - 1  # what any count here can sensibly be; also keeps int() far from its digit limit
_INT = re.compile(r"\s*([0-9]{1,19})\s*")
_BYTES = re.compile(r"\s*([0-9]{1,19})\s*([kmgt]i?)?b?\s*", re.IGNORECASE)
_SECONDS = re.compile(r"\s*([0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})\s*(ms|s)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_int(text: object, field: str, minimum: int = 0, what: str = "a whole number") -> int:
    """'16' -> 16: ASCII digits only (surrounding spaces allowed), at least `minimum`."""
    m = _INT.fullmatch(str(text))
    if not m or int(m.group(1)) > MAX_INT:
        raise InputError(field, f"{str(text)!r} is not {what} (digits 0-9 only)")
    value = int(m.group(1))
    if value < minimum:
        raise InputError(field, f"must be at least {minimum}, got {value}")
    return value


def parse_count(text: object, field: str) -> int:
    """A positive number of samples."""
    m = _INT.fullmatch(str(text))
    if not m or not 1 <= int(m.group(1)) <= MAX_INT:
        raise InputError(field, f"{str(text)!r} is not a positive number of samples")
    return int(m.group(1))


def parse_bytes(text: object, field: str) -> int:
    """'1000000', '500MB', '1GiB' -> bytes (decimal k/M/G/T, binary Ki/Mi/Gi/Ti; the B is optional)."""
    m = _BYTES.fullmatch(str(text))
    if not m or not 1 <= int(m.group(1)) * _UNITS[(m.group(2) or "").lower()] <= MAX_INT:
        raise InputError(field, f"{str(text)!r} is not a positive byte count (e.g. 1000000000, 500MB or 1GiB)")
    return int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]


def parse_seconds(text: object, field: str) -> float:
    """'1', '0.5', '2s', '500ms' -> seconds (zero or more)."""
    m = _SECONDS.fullmatch(str(text))
    if not m:
        raise InputError(field, f"{str(text)!r} is not a duration in seconds (e.g. 1, 0.5, 2s or 500ms)")
    return float(m.group(1)) / (1000 if (m.group(2) or "").lower() == "ms" else 1)
