"""``infer deploy``: the same profile on Kubernetes, in a container, or as a system service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from infer_cli.config.loader import LoadedProfile
    from infer_cli.deploy.common import Images, Rendered

app = typer.Typer(
    help="Deploy a profile: Kubernetes (vLLM's production-stack chart), Docker, or systemd.",
    no_args_is_help=True,
)

ProfileArg = Annotated[
    str,
    typer.Option(
        "--profile", "-p", help="Profile name or path to a .toml file.", show_default=False
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")]
VllmImage = Annotated[
    str | None,
    typer.Option(
        "--vllm-image",
        help="vLLM's image (default: vllm/vllm-openai:vVERSION).",
        show_default=False,
    ),
]


@app.command("helm")
def helm(
    profile: ProfileArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the values here (default: stdout).")
    ] = None,
    force: ForceOption = False,
    vllm_image: VllmImage = None,
    lmcache_image: Annotated[
        str | None,
        typer.Option(
            "--lmcache-image",
            help="vLLM with LMCache, for profiles with LMCache "
            "(default: lmcache/vllm-openai:latest, as the chart expects).",
            show_default=False,
        ),
    ] = None,
    infer_image: Annotated[
        str | None,
        typer.Option(
            "--infer-image",
            help="infer's proxy image (build it with the docker "
            "target's Dockerfile; see the README).",
            show_default=False,
        ),
    ] = None,
    hf_token_secret: Annotated[
        str,
        typer.Option(
            "--hf-token-secret",
            help="Secret with the Hugging Face token (key 'token'); '' for none.",
        ),
    ] = "hf-token",
    keys_secret: Annotated[
        str,
        typer.Option(
            "--keys-secret",
            help="Secret with the proxy's client keys (key 'keys', comma-separated).",
        ),
    ] = "infer-api-keys",
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage", help="Model volume size (default: 120Gi per GPU).", show_default=False
        ),
    ] = None,
    service_type: Annotated[
        str,
        typer.Option(
            "--service-type", help="The proxy's Service type: ClusterIP, NodePort or LoadBalancer."
        ),
    ] = "ClusterIP",
) -> None:
    """Values for vLLM's production-stack Helm chart, with infer's proxy as the public door."""
    from infer_cli.deploy.helm import HelmOptions, render

    if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        from infer_cli.errors import UsageError

        raise UsageError(
            f"--service-type {service_type!r} is not a Service type",
            hint="use ClusterIP, NodePort or LoadBalancer",
        )
    options = HelmOptions(
        images=_images(vllm=vllm_image, lmcache=lmcache_image, infer=infer_image),
        hf_secret=hf_token_secret or None,
        keys_secret=keys_secret,
        storage=storage,
        service_type=service_type,
        output=str(output) if output else "values.yaml",
    )
    _finish(render(_load(profile), options), output, force=force, folder=False)


@app.command("docker")
def docker(
    profile: ProfileArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for Dockerfile, compose.yaml and "
            "profile.toml (default: all three on stdout).",
            show_default=False,
        ),
    ] = None,
    force: ForceOption = False,
    vllm_image: VllmImage = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source",
            help="infer's source folder, built into the image (default: "
            "the checkout this infer runs from).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """A Dockerfile and compose.yaml that run 'infer serve' on one GPU machine."""
    from infer_cli.deploy.docker import DockerOptions, render

    options = DockerOptions(
        source=str(source.resolve()) if source else _checkout(),
        images=_images(vllm=vllm_image),
        folder=str(output) if output else ".",
    )
    _finish(render(_load(profile), options), output, force=force, folder=True)


@app.command("systemd")
def systemd(
    profile: ProfileArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the unit here, e.g. infer.service (default: stdout).",
            show_default=False,
        ),
    ] = None,
    force: ForceOption = False,
    executable: Annotated[
        str | None,
        typer.Option(
            "--exec",
            help="The infer executable the unit runs (default: this one).",
            show_default=False,
        ),
    ] = None,
    user: Annotated[str, typer.Option("--user", help="The user the service runs as.")] = "infer",
) -> None:
    """A systemd unit that runs 'infer serve' and restarts it on failure."""
    from infer_cli.deploy.systemd import UNIT, SystemdOptions, render

    options = SystemdOptions(
        executable=executable or _this_infer(),
        user=user,
        unit=output.name if output else UNIT,
    )
    _finish(render(_load(profile), options), output, force=force, folder=False)


def _load(profile: str) -> LoadedProfile:
    from infer_cli.config import loader

    # what the profile files say: this shell's INFER_* variables are not baked into a deployment
    return loader.load(profile, environ={})


def _images(
    *, vllm: str | None = None, lmcache: str | None = None, infer: str | None = None
) -> Images:
    from dataclasses import replace

    from infer_cli.deploy.common import Images

    chosen = {"vllm": vllm, "lmcache": lmcache, "infer": infer}
    return replace(Images(), **{key: value for key, value in chosen.items() if value})


def _checkout() -> str:
    from infer_cli.deploy.common import source_checkout
    from infer_cli.errors import UsageError

    found = source_checkout()
    if found is None:
        raise UsageError(
            "this infer is not run from a source checkout, so the image has nothing to install",
            hint="pass --source PATH (a checkout of infer)",
        )
    return str(found)


def _this_infer() -> str:
    import shutil
    import sys

    beside = Path(sys.executable).parent / "infer"
    if beside.is_file():
        return str(beside.resolve())
    found = shutil.which("infer")
    return str(Path(found).resolve()) if found else "/usr/local/bin/infer"


def _finish(rendered: Rendered, output: Path | None, *, force: bool, folder: bool) -> None:
    from infer_cli.deploy.output import as_text, check, write
    from infer_cli.ui import console

    if output is not None:
        check(rendered.files, output, folder=folder, force=force)
    for line in rendered.notes.dropped:
        console.warn(f"not deployed: {line}")
    for line in rendered.notes.chosen:
        console.info(f"note: {line}")
    if output is None:
        typer.echo(as_text(rendered.files), nl=False)
    else:
        for path in write(rendered.files, output, folder=folder, force=force):
            console.info(f"wrote {path}")
    console.info("next:")
    for step in rendered.next_steps:
        console.info(f"  {step}")
