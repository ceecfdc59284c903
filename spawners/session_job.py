"""The batch job of an interactive session, built from a profile and the spawner's state."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from gpuaf.homes import home_of
from gpuaf.profiles import SliceProfile
from gpuaf.settings import Settings
from gpuaf.spawners.backends import JobSpec

# the hub's token of the session: never in a job ad or a command line
TOKEN_VARS = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


def accounting_group(user_groups: list[str], profile: SliceProfile) -> str | None:
    """The user's group the booking counts against: one the profile is open to."""
    eligible = sorted(g for g in user_groups if not profile.groups or g in profile.groups)
    return eligible[0] if eligible else None


def session_job(
    *,
    settings: Settings,
    profile: SliceProfile,
    user: str,
    user_groups: list[str],
    session_id: str,
    env: dict[str, str],
    args: list[str],
    port: int,
    remote: bool,
) -> JobSpec:
    """A local process on ``port``, or a remote job that reports the port it picked."""
    # the server's own activity reports count an open browser tab's polling as activity:
    # the session agent reports what the session really does instead (gpuaf.session_activity)
    env = {k: v for k, v in env.items() if k != "JUPYTERHUB_ACTIVITY_URL"}
    env = {
        **env,
        **settings.sessions.environment,
        "GPUAF_SESSION_ID": session_id,
        # where the session agent reports GPU samples (gpuaf.agent)
        "GPUAF_PORTAL_URL": f"{settings.portal.url}services/{settings.portal.service_name}",
        "GPUAF_PROFILE": profile.name,
        # the frozen environment of a notebook job names the session's image (gpuaf.labext)
        **({"GPUAF_IMAGE": settings.sessions.image} if settings.sessions.image else {}),
    }
    # "Submit as batch job" in JupyterLab: the server side of it (gpuaf.labext)
    singleuser = [*settings.sessions.singleuser_cmd, *args]
    singleuser.append("--ServerApp.jpserver_extensions=gpuaf.labext=True")
    tags = {"portal": "gpuaf", "user": user, "session": session_id, "profile": profile.name}
    common = {
        "name": f"gpuaf-{session_id}",
        "user": user,
        "profile": profile,
        "tags": tags,
        "image": settings.sessions.image,
        "accounting_group": accounting_group(user_groups, profile),
    }
    if remote:
        secrets = {k: env.pop(k) for k in TOKEN_VARS if k in env}
        command = ["gpuaf-job", "batchspawner-singleuser", *singleuser]
        return JobSpec(command=tuple(command), env=env, secrets=secrets, **common)
    home = home_of(settings, user)
    env["HOME"] = str(home)
    if "PATH" not in env:  # a local session runs in the portal's own environment
        here = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([here, os.environ.get("PATH", os.defpath)])
    # gpuaf-job keeps the user's IAM token fresh in $BEARER_TOKEN_FILE, then runs the server
    command = [resolve_command("gpuaf-job"), resolve_command(singleuser[0]), *singleuser[1:]]
    command += ["--ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={home}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return JobSpec(command=tuple(command), env=env, workdir=home, **common)


def resolve_command(name: str) -> str:
    """A command next to this Python first (the portal's own environment), then on PATH."""
    if os.path.isabs(name):
        return name
    here = str(Path(sys.executable).parent)
    return shutil.which(name, path=os.pathsep.join([here, os.environ.get("PATH", "")])) or name
