"""``infer models``: what an endpoint serves, with context length, prices and features."""

from __future__ import annotations

from infer_cli.cli.options import ApiKeyOption, JsonOption, UrlOption, resolve_url


def models(
    url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False
) -> None:
    """List the models an endpoint serves: context length, prices per million tokens, features.

    [b]Examples[/]

      infer models                                  [dim]# the local proxy[/]
      infer models -u http://gpu-box:8000 --json    [dim]# a bare vLLM, as JSON[/]
    """
    import asyncio
    import json

    import typer

    from infer_cli.client import listing

    source, found = asyncio.run(listing.fetch(resolve_url(url), api_key))
    if json_output:
        typer.echo(json.dumps({"source": source, "models": [m.to_json() for m in found]}, indent=2))
        return
    from infer_cli.ui.models_view import print_models

    print_models(source, found)
