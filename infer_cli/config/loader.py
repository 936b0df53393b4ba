"""Finding, merging and validating profiles.

Precedence, lowest first: the bundled profile, the user's profile file (which may ``extends`` a
bundled one), ``INFER_<SECTION>__<KEY>`` environment variables, then ``--set section.key=value``
flags. Every value remembers where it came from, so a validation error names the file (or variable,
or flag) that set the bad value.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from infer_cli import paths
from infer_cli.config.schema import Profile
from infer_cli.errors import ProfileError, ProfileNotFoundError, SettingError

ENV_PREFIX = "INFER_"
ENV_SEPARATOR = "__"
SECTIONS = tuple(name for name in Profile.model_fields if name not in ("description", "extends"))
"""The profile's tables, in schema order (``INFER_<SECTION>__<KEY>`` and ``--set`` accept these)."""


def bundled_dir() -> Path:
    """The bundled profiles: ``profiles/`` in a checkout, ``infer_cli/_profiles`` in a wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_profiles", package.parent / "profiles"):
        if candidate.is_dir():
            return candidate
    raise ProfileError(f"bundled profiles are missing from the installation at {package}")


@dataclass(frozen=True)
class ProfileSource:
    name: str
    path: Path
    bundled: bool


@dataclass
class LoadedProfile:
    """A validated profile and where each of its settings came from."""

    name: str
    profile: Profile
    chain: list[ProfileSource]
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> ProfileSource:
        return self.chain[-1]


def available() -> list[ProfileSource]:
    """Every profile a name can resolve to: user profiles, then bundled ones they do not shadow."""
    found: dict[str, ProfileSource] = {}
    user = paths.profiles_home()
    if user.is_dir():
        for path in sorted(user.glob("*.toml")):
            found[path.stem] = ProfileSource(path.stem, path, bundled=False)
    for path in sorted(bundled_dir().glob("*.toml")):
        found.setdefault(path.stem, ProfileSource(path.stem, path, bundled=True))
    return sorted(found.values(), key=lambda s: (s.bundled, s.name))


def resolve(name_or_path: str, *, skip: Path | None = None) -> ProfileSource:
    """A profile name (user folder first, then bundled) or a path to a TOML file."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".toml")
    if looks_like_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ProfileNotFoundError(
                f"profile file {path} does not exist",
                hint="check the path or run 'infer profiles list'",
            )
        return ProfileSource(path.stem, path.resolve(), bundled=False)
    candidates = [
        ProfileSource(name_or_path, paths.profiles_home() / f"{name_or_path}.toml", bundled=False),
        ProfileSource(name_or_path, bundled_dir() / f"{name_or_path}.toml", bundled=True),
    ]
    for candidate in candidates:
        if candidate.path.is_file() and (skip is None or candidate.path.resolve() != skip):
            return candidate
    names = sorted({s.name for s in available()})
    close = difflib.get_close_matches(name_or_path, names, n=1)
    suggestion = f"did you mean '{close[0]}'? " if close else ""
    raise ProfileNotFoundError(
        f"unknown profile '{name_or_path}'",
        hint=f"{suggestion}known profiles: {', '.join(names)}; or pass a path to a .toml file",
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(
            f"profile {path} is not valid TOML: {error}", hint="fix the file"
        ) from None
    except OSError as error:
        raise ProfileError(f"cannot read profile {path}: {error.strerror}") from None


def load(
    name_or_path: str,
    *,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> LoadedProfile:
    """Resolve, follow ``extends``, apply environment and ``--set`` overrides, and validate."""
    source = resolve(name_or_path)
    data, origins, chain = _read_chain(source, seen=[])
    environ = os.environ if environ is None else environ
    for key, value, origin in [*prototype_env_overrides(environ), *env_overrides(environ)]:
        _set_path(data, origins, key, value, origin)
    for item in overrides:
        key, value = parse_assignment(item)
        _set_path(data, origins, key, value, f"--set {item}")
    data.pop("extends", None)
    if len(chain) > 1:
        data["extends"] = chain[-2].name
    profile = validate(data, origins, default_origin=str(source.path))
    check_file_types(data, origins)
    return LoadedProfile(name=source.name, profile=profile, chain=chain, origins=origins)


# --- strict types in files ---------------------------------------------------------------------

_KINDS: dict[type, str] = {bool: "true or false", int: "a whole number", float: "a number"}


def is_file_origin(origin: str) -> bool:
    """Whether ``origin`` (an entry of :attr:`LoadedProfile.origins`) is a profile file."""
    return not origin.startswith(("environment variable ", "--set "))


def check_file_types(data: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """A value written in a TOML file has the type the schema asks for: ``port = "8080"`` or
    ``enable_prefix_caching = "yes"`` is an error naming the key and the file, although
    validation would coerce it (the environment and ``--set`` give text, and may).
    """
    for key, origin in origins.items():
        if not is_file_origin(origin):
            continue
        wanted = _scalar_type(key.split("."))
        if wanted is None:
            continue
        value = _get_path(data, key)
        fits = isinstance(value, wanted) and (wanted is bool or not isinstance(value, bool))
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            fits = True  # TOML's 1 for 1.0
        if not fits:
            literal = {bool: "true", int: "8080", float: "0.9"}[wanted]
            meant = parse_value(value) if isinstance(value, str) else None
            if isinstance(meant, bool | int | float) and isinstance(meant, wanted):
                literal = tomllib_literal(meant)
            raise ProfileError(
                f"bad value for '{key}' in {origin}: must be {_KINDS[wanted]}, "
                f"not {_toml_kind(value)} {value!r}",
                hint=f"write it without quotes, e.g. {key.rpartition('.')[2]} = {literal}",
            )


def _scalar_type(parts: list[str]) -> type | None:
    """bool, int or float when the schema's field at ``parts`` is exactly that (or optional)."""
    from types import UnionType
    from typing import Union, get_args, get_origin

    model: type[BaseModel] = Profile
    for i, part in enumerate(parts):
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        if get_origin(annotation) in (Union, UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = options[0] if len(options) == 1 else None
        if i == len(parts) - 1:
            scalars: list[type] = [bool, int, float]
            return scalars[scalars.index(annotation)] if annotation in scalars else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


def tomllib_literal(value: bool | int | float) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _get_path(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _toml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "the string"
    return "the value"


# --- where each value came from ----------------------------------------------------------------


def describe_origin(origin: str | None) -> str:
    """``bundled h100.toml``, ``file PATH``, ``environment INFER_...``, ``flag --set ...``, or
    ``default`` (the schema's own value)."""
    if origin is None:
        return "default"
    if origin.startswith("environment variable "):
        return "environment " + origin.removeprefix("environment variable ")
    if origin.startswith("--set "):
        return "flag " + origin
    path = Path(origin)
    try:
        if path.resolve().is_relative_to(bundled_dir().resolve()):
            return f"bundled {path.name}"
    except ProfileError:
        pass
    return f"file {path}"


def value_origins(loaded: LoadedProfile) -> list[tuple[str, Any, str]]:
    """Every setting of the effective profile as (dotted key, value, where it came from)."""
    rows: list[tuple[str, Any, str]] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, Mapping) and value:
                walk(value, f"{dotted}.")
                continue
            rows.append((dotted, value, describe_origin(_own_origin(dotted, loaded.origins))))

    walk(loaded.profile.model_dump(mode="json", exclude={"extends"}), "")
    return rows


def _own_origin(key: str, origins: Mapping[str, str]) -> str | None:
    """Where ``key`` was set: itself, or a table or list above it set as a whole."""
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    return None


def validate(data: dict[str, Any], origins: Mapping[str, str], *, default_origin: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        raise _explain(error, data, origins, default_origin) from None


def _read_chain(
    source: ProfileSource, *, seen: list[Path]
) -> tuple[dict[str, Any], dict[str, str], list[ProfileSource]]:
    path = source.path.resolve()
    if path in seen:
        cycle = " -> ".join(str(p) for p in [*seen, path])
        raise ProfileError(
            f"profiles extend each other in a cycle: {cycle}", hint="remove one 'extends'"
        )
    raw = read_toml(path)
    parent_name = raw.get("extends")
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    chain: list[ProfileSource] = []
    if parent_name is not None:
        if not isinstance(parent_name, str):
            raise ProfileError(f"'extends' in {path} must be a profile name or path (a string)")
        parent = _resolve_parent(parent_name, path)
        data, origins, chain = _read_chain(parent, seen=[*seen, path])
    _merge(data, origins, raw, str(path), prefix="")
    chain.append(source)
    return data, origins, chain


def _resolve_parent(name: str, child: Path) -> ProfileSource:
    if "/" in name or name.endswith(".toml"):
        relative = (child.parent / name).expanduser()
        return resolve(str(relative))
    # a user file named like a bundled profile may extend it: skip the child itself
    return resolve(name, skip=child)


def _merge(
    into: dict[str, Any], origins: dict[str, str], raw: Mapping[str, Any], origin: str, prefix: str
) -> None:
    """Tables merge key by key; any other value (lists included) replaces the parent's."""
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], origins, value, origin, prefix=f"{dotted}.")
        elif isinstance(value, dict):
            into[key] = {}
            _merge(into[key], origins, value, origin, prefix=f"{dotted}.")
        else:
            into[key] = value
            origins[dotted] = origin


def parse_value(text: str) -> Any:
    """A TOML literal (``128``, ``true``, ``0.9``, ``["a", "b"]``, ``"x"``), else the text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or "." not in key:
        raise SettingError(
            f"--set {item!r} is not SECTION.KEY=VALUE",
            hint="e.g. --set engine.max_num_seqs=128 or --set model.context_length=8192",
        )
    return key, parse_value(value.strip())


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    """``INFER_ENGINE__MAX_NUM_SEQS=128`` -> ``engine.max_num_seqs = 128``."""
    found = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_SEPARATOR)
        if parts[0] not in SECTIONS or len(parts) < 2 or not all(parts):
            continue
        found.append((".".join(parts), parse_value(value), f"environment variable {name}"))
    return found


# The earlier prototype's settings (a proxy configured by environment variables) keep working; the
# INFER_* form of the same key wins when both are set. Prices stay strings (exact decimals).
PROTOTYPE_ENV: dict[str, tuple[str, type]] = {
    "MODEL_ID": ("model.served_name", str),
    "MODEL_DISPLAY_NAME": ("openrouter.name", str),
    "MAX_CONTEXT_LENGTH": ("model.context_length", int),
    "QUANTIZATION": ("openrouter.quantization", str),
    "PRICE_PER_PROMPT_TOKEN": ("openrouter.pricing.prompt", str),
    "PRICE_PER_COMPLETION_TOKEN": ("openrouter.pricing.completion", str),
    "REQUEST_TIMEOUT": ("proxy.request_timeout", float),
    "RATE_LIMIT_REQUESTS_PER_MINUTE": ("proxy.rate_limit_rpm", int),
    "RATE_LIMIT_TOKENS_PER_MINUTE": ("proxy.rate_limit_tpm", int),
}


_ARTICLE = {int: "a whole number", float: "a number", str: "text"}


def prototype_env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    """``MODEL_ID=x`` -> ``model.served_name = "x"`` (and the prototype's other variables)."""
    found: list[tuple[str, Any, str]] = []
    for name, (key, kind) in PROTOTYPE_ENV.items():
        text = environ.get(name, "").strip()
        if not text:
            continue
        value: Any = text
        if kind is not str:
            try:
                value = kind(text)
            except ValueError:
                raise ProfileError(
                    f"environment variable {name}={text!r} is not {_ARTICLE[kind]}",
                    hint=f"fix or unset {name} (it sets {key})",
                ) from None
        found.append((key, value, f"environment variable {name}"))
    return found


def _set_path(
    data: dict[str, Any], origins: dict[str, str], key: str, value: Any, origin: str
) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SettingError(
                f"{origin}: '{part}' is a value, not a table, so '{key}' cannot be set"
            )
        node = child
    node[parts[-1]] = value
    origins[key] = origin


def _explain(
    error: ValidationError, data: Mapping[str, Any], origins: Mapping[str, str], default_origin: str
) -> ProfileError:
    """The first problem, as one line naming the key, where it was set, and what is allowed."""
    problem = error.errors()[0]
    location = [str(part) for part in problem["loc"] if not isinstance(part, int)]
    key = ".".join(location)
    where = _origin_of(key, origins, default_origin)
    kind = problem["type"]
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        close = difflib.get_close_matches(location[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        table = ".".join(location[:-1]) or "the top level"
        return ProfileError(
            f"unknown key '{key}' in {where}{more}",
            hint=f"{hint}allowed in {table}: {', '.join(allowed)}",
        )
    if kind == "missing":
        return ProfileError(
            f"missing required key '{key}' in {where}{more}", hint="add it to the profile"
        )
    message = problem["msg"].removeprefix("Value error, ")
    got = problem.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return ProfileError(f"bad value for '{key}' in {where}: {message}{shown}{more}")


def _origin_of(key: str, origins: Mapping[str, str], default: str) -> str:
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        # a key set as a whole table, or a child of the key
        children = [v for k, v in origins.items() if k.startswith(f"{probe}.")]
        if children:
            return children[-1]
        probe = probe.rpartition(".")[0]
    return default


def _allowed_keys(location: list[str]) -> list[str]:
    model: type[BaseModel] = Profile
    for part in location:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)
