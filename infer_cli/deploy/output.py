"""Writing a target's files: to a file or a folder, never over an existing file without force."""

from __future__ import annotations

from pathlib import Path

from infer_cli.deploy.common import Artifact
from infer_cli.errors import InferError, UsageError


def destinations(files: list[Artifact], output: Path, *, folder: bool) -> list[Path]:
    """Where each file goes: ``output`` itself for one file, ``output/NAME`` for a folder."""
    return [output / item.name for item in files] if folder else [output]


def check(files: list[Artifact], output: Path, *, folder: bool, force: bool) -> list[Path]:
    """The paths to write; an error when one exists (unless ``force``) or the folder is a file."""
    paths = destinations(files, output, folder=folder)
    if folder and output.exists() and not output.is_dir():
        raise UsageError(f"{output} is a file, not a folder", hint="give -o a folder for docker")
    if not force:
        existing = [path for path in paths if path.exists()]
        if existing:
            raise UsageError(
                f"{existing[0]} already exists", hint="pass --force to overwrite it, or choose -o"
            )
    return paths


def write(files: list[Artifact], output: Path, *, folder: bool, force: bool) -> list[Path]:
    """Write all files, or none when one of them exists (unless ``force``)."""
    paths = check(files, output, folder=folder, force=force)
    from infer_cli.files import write_atomic

    try:
        for path, item in zip(paths, files, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, item.text.encode())
            path.chmod(0o644)
    except OSError as error:
        raise InferError(
            f"cannot write {error.filename or output}: {error.strerror}",
            hint="check the folder exists and is writable",
        ) from None
    return paths


def as_text(files: list[Artifact]) -> str:
    """Several files on stdout, each under a '# ==> NAME <==' line (as 'head' shows files)."""
    if len(files) == 1:
        return files[0].text
    return "\n".join(f"# ==> {item.name} <==\n{item.text}" for item in files)
