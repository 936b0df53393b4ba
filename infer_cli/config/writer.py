"""the effective profile as TOML, and a commented starter (``profiles init``)."""

from __future__ import annotations

from typing import Any

import tomli_w
from pydantic import BaseModel

from infer_cli.config.loader import SECTIONS, LoadedProfile
from infer_cli.config.schema import Profile


def to_toml(profile: Profile) -> str:
    """The whole effective profile, every key explicit (unset keys left out: TOML has no null)."""
    data = profile.model_dump(mode="json", exclude_none=True)
    data.pop("extends", None)
    return tomli_w.dumps(data)


def starter(name: str, base: LoadedProfile) -> str:
    """A profile that extends ``base`` and lists every key it could change, commented out.

    Each key shows the value it inherits and what it means, so a user uncomments what they change; a
    diff between two profiles then shows only deliberate choices.
    """
    inherited = base.profile
    lines = [
        f"# {name}: a profile of your own. Every key below is commented out and shows the value",
        f"# it inherits from '{base.name}'; uncomment what you change. Check it with",
        f"# `infer profiles validate {name}`, see the result with `infer profiles show {name}`,",
        f"# and the commands with `infer serve -p {name} --dry-run`.",
        f'extends = "{base.name}"',
        f"description = {_value(f'My profile, based on {base.name}')}",
    ]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        lines += _section_lines(getattr(inherited, section), section)
    return "\n".join(lines) + "\n"


def _section_lines(section: BaseModel, table: str) -> list[str]:
    lines = []
    nested = []
    for key, field in type(section).model_fields.items():
        value = getattr(section, key)
        if isinstance(value, BaseModel):
            nested.append((key, value))
            continue
        about = field.description or ""
        if value is None:
            lines.append(f"# {key} =    # unset{': ' + about if about else ''}")
        else:
            lines.append(f"# {key} = {_value(value)}{'  # ' + about if about else ''}")
    for key, value in nested:
        lines += ["", f"# [{table}.{key}]", *_section_lines(value, f"{table}.{key}")]
    return lines


def _value(value: Any) -> str:
    """One TOML value on one line, as it would appear after ``key = ``."""
    if isinstance(value, BaseModel):  # an item of a list of tables, e.g. lmcache.l2
        value = value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")
