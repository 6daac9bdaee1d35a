"""`_id` identity as MongoDB sees it: ids the server holds equal are one key to us, every other id its own.

MongoDB compares numbers by value across int, long, double and decimal (`1`, `1.0`, `Int64(1)` and
`Decimal128("1")` are one `_id`), and embedded documents field by field in order with the same rule, so
the sync keys its maps by a canonical form rather than by the Python value (which for `Decimal128` or
`Code` is not even hashable).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import bson
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Timestamp
from bson.datetime_ms import DatetimeMS


def id_key(value: Any) -> Hashable:
    """A hashable key equal for exactly the `_id` values MongoDB treats as equal."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float | Decimal128):
        return ("number", _number(value))
    if isinstance(value, Code):  # Code is a str subclass: tell it apart first
        return ("code", str(value), None if value.scope is None else id_key(value.scope))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, Mapping):
        return ("document", tuple((str(k), id_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(id_key(v) for v in value))
    if isinstance(value, bytes):
        return ("binary", value.subtype if isinstance(value, Binary) else 0, bytes(value))
    if isinstance(value, ObjectId):
        return ("objectId", value.binary)
    if isinstance(value, datetime | DatetimeMS):
        return ("date", int(value if isinstance(value, DatetimeMS) else DatetimeMS(value)))
    if isinstance(value, Timestamp):
        return ("timestamp", value.time, value.inc)
    if isinstance(value, MinKey | MaxKey):
        return (type(value).__name__,)
    if value is None:
        return ("null",)
    return ("bson", bson.encode({"_id": value}))  # a regular expression, a DBRef: by their bytes


def same_bson(a: Any, b: Any) -> bool:
    """Whether two equal ids are also stored alike (same types all the way down): else a type change."""
    return bson.encode({"_id": a}) == bson.encode({"_id": b})


def _number(value: int | float | Decimal128) -> Hashable:
    """Numbers by exact value; NaN equals NaN and -0 equals 0, as in MongoDB's comparison."""
    number: Decimal | float | int = value.to_decimal() if isinstance(value, Decimal128) else value
    if isinstance(number, Int64):
        number = int(number)
    if isinstance(number, Decimal):
        if number.is_nan():
            return "nan"
        if number.is_infinite():
            return "inf" if number > 0 else "-inf"
    elif isinstance(number, float):
        if math.isnan(number):
            return "nan"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
    return Fraction(number)
