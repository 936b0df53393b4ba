"""``infer deploy systemd``: a unit that runs ``infer serve`` on this machine and keeps it running.

infer restarts its own engine processes (``[supervisor]``); when it gives up it exits non-zero and
systemd starts it again. systemd stops it with SIGTERM to infer alone (``KillMode=mixed``), so infer
stops vLLM and LMCache in order before the rest of the group is killed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infer_cli.config.loader import LoadedProfile
from infer_cli.deploy.common import Artifact, Notes, Rendered

UNIT = "infer.service"
STATE_DIR = "/var/lib/infer"
ENV_FILE = "/etc/infer/infer.env"


@dataclass(frozen=True)
class SystemdOptions:
    executable: str  # the absolute path of the `infer` to run
    user: str = "infer"
    unit: str = UNIT  # the unit's file name (the next-step line uses it)


def profile_argument(loaded: LoadedProfile) -> str:
    """A bundled profile by name; any other by its absolute path (the service's user reads it)."""
    source = loaded.source
    return source.name if source.bundled else str(source.path)


def unit(loaded: LoadedProfile, options: SystemdOptions, notes: Notes) -> str:
    profile = loaded.profile
    about = _escape(profile.description or profile.model.name)
    stop = math.ceil(profile.engine.stop_timeout + profile.lmcache.stop_timeout + 10)
    command = _quote([options.executable, "serve", "--profile", profile_argument(loaded)])
    user = "" if options.user == "root" else f"User={options.user}\n"
    if profile.engine.distributed_executor_backend == "ray":
        notes.chose("engine.distributed_executor_backend 'ray': start Ray on every node before "
                    "this service ('ray start --head' here)")  # fmt: skip
    return f"""# infer deploy systemd -p {loaded.name}: 'infer serve' as a system service.
# Install: sudo cp {options.unit} /etc/systemd/system/ && sudo systemctl daemon-reload
# Keys: 'sudo -u {options.user} INFER_HOME={STATE_DIR} infer keys add NAME',
# or INFER_API_KEYS=KEY1,KEY2 in {ENV_FILE}.
[Unit]
Description=infer: {about} (profile {loaded.name})
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
{user}StateDirectory=infer
Environment=INFER_HOME={STATE_DIR}
Environment=NO_COLOR=1
Environment=PYTHONUNBUFFERED=1
EnvironmentFile=-{ENV_FILE}
ExecStart={command}
Restart=on-failure
RestartSec=10
KillMode=mixed
TimeoutStopSec={stop}
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def render(loaded: LoadedProfile, options: SystemdOptions) -> Rendered:
    notes = Notes()
    text = unit(loaded, options, notes)
    name = options.unit
    steps = [
        f"sudo cp {name} /etc/systemd/system/{name} && sudo systemctl daemon-reload",
        f"sudo systemctl enable --now {name}",
    ]
    return Rendered(files=[Artifact(name, text)], notes=notes, next_steps=steps)


def _quote(argv: list[str]) -> str:
    """systemd's command line: words with spaces in double quotes, '%' and '$' taken literally."""
    words = [_escape(arg).replace("$", "$$") for arg in argv]
    return " ".join(f'"{word}"' if any(c.isspace() for c in word) else word for word in words)


def _escape(text: str) -> str:
    """systemd expands '%' specifiers in most settings; '%%' is a literal '%'."""
    return text.replace("%", "%%")
