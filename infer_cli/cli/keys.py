"""``infer keys``: the API keys the proxy accepts, kept hashed in a keys file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from infer_cli.cli.options import JsonOption

app = typer.Typer(help="Create, list and revoke the API keys clients send to the proxy.")

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        envvar="INFER_API_KEYS_FILE",
        help="Keys file (default: api_keys in infer's home; set proxy.api_keys_file to use "
        "another one).",
        show_default=False,
    ),
]


def _file(path: Path | None) -> Path:
    from infer_cli.config.keys import default_keys_file

    return path if path is not None else default_keys_file()


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the key (shown in logs and metrics).")],
    file: FileOption = None,
) -> None:
    """Make a new key: printed once on stdout; only its SHA-256 hash is stored.

    [b]Examples[/]

      infer keys add alice
      INFER_API_KEY=$(infer keys add ci) infer chat "hi"
    """
    from infer_cli.config.keys import add_key
    from infer_cli.ui import console

    path = _file(file)
    key = add_key(path, name)
    typer.echo(key)
    console.info(f"added key {name} to {path}; copy it now, it is not stored in plaintext")


@app.command("list")
def list_keys(file: FileOption = None, json_output: JsonOption = False) -> None:
    """List key names (never the keys: only their hashes are stored).

    [b]Examples[/]

      infer keys list
      infer keys list --json
    """
    from infer_cli.config.keys import read_keys_file

    path = _file(file)
    exists = path.exists()
    keys = read_keys_file(path) if exists else []
    rows = [{"name": key.id, "sha256": key.digest.hex()[:12]} for key in keys]
    if json_output:
        # What a proxy reading this file does, by the file alone (keys in the profile or in
        # INFER_API_KEYS are required too).
        auth = "keys" if rows else ("closed" if exists else "open")
        typer.echo(json.dumps({"file": str(path), "auth": auth, "keys": rows}, indent=2))
        return
    from infer_cli.ui import console
    from infer_cli.ui.tables import print_table

    if not exists:
        console.info(
            f"no keys file {path}: the proxy serves every client, unless proxy.api_keys or "
            "INFER_API_KEYS set keys (add one: infer keys add NAME; enforced within a second)"
        )
        return
    if not rows:
        console.info(
            f"no keys in {path}: the proxy answers 401 to every request until a key is added "
            "(infer keys add NAME); to serve every client, delete the file and restart it"
        )
        return
    print_table(["NAME", "SHA256"], [[row["name"], row["sha256"] + "…"] for row in rows])


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Name of the key to revoke.")],
    file: FileOption = None,
) -> None:
    """Revoke a key; a running proxy stops accepting it within a second.

    [b]Examples[/]

      infer keys remove alice
    """
    from infer_cli.config.keys import remove_key
    from infer_cli.errors import UsageError
    from infer_cli.ui import console

    path = _file(file)
    if not remove_key(path, name):
        raise UsageError(f"no key named {name!r} in {path}", hint="see `infer keys list`")
    console.info(f"removed key {name} from {path}")
