"""What every profile table shares: strict models, sizes, and errors placed at a key.

Every table forbids unknown keys, so a typo is an error that names the key instead of a setting
silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from ``1073741824``, ``"1G"``, ``"1GiB"`` or ``"512M"`` (K, M, G, T: 1024-based)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a size; use bytes or a number with K, M, G or T (e.g. '2G')"
        )
    return int(float(match.group(1)) * _FACTORS[match.group(2).upper()])


class Strict(BaseModel):
    """The base of every profile table: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def key_error(location: tuple[str, ...], message: str, value: Any) -> NoReturn:
    """Fail validation at ``location`` (a key of another table than the validator's own)."""
    from pydantic import ValidationError
    from pydantic_core import InitErrorDetails, PydanticCustomError

    raise ValidationError.from_exception_data(
        "Profile",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", message), loc=location, input=value
            )
        ],
    )
