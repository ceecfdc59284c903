"""Submit descriptions for HTCondor, built from validated values only.

Every value that reaches a description is a constant of this module, a number checked
here, or a string that passed a strict pattern or the quoting rules of
:mod:`.htcondor_quote`. Nothing is formatted into a description template and nothing
goes through a shell: :func:`build` returns a plain ``dict`` of submit keys that
``htcondor2.Submit(dict)`` turns into the description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from gpuaf.gpus import GpuModel
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.base import JobSpec
from gpuaf.spawners.backends.checks import TAG_KEY
from gpuaf.spawners.backends.htcondor_quote import (
    MACRO,
    classad_string,
    count,
    quote_arguments,
    quote_environment,
    refuse,
    tag_value,
)

SECRETS_FILE = "gpuaf-secrets.json"
DISK_KIB = 1024 * 1024  # request_disk: 1 GiB of scratch for the job's sandbox
MIG_MEMORY_TOLERANCE = 0.95  # NVML reports a few MiB less than the profile table

ABS_PATH = re.compile(r"^/[A-Za-z0-9_.+/-]*$")
COMMAND_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
IMAGE = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9_.:/@+-]*$")
ACCOUNTING = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$")
MIG_PROFILE = re.compile(r"^[1-8]g\.[0-9]{1,4}gb(\+me)?$")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9 ._+-]{1,80}$")
# set by HTCondor from what it assigned; a value from the portal would lie
CONDOR_OWNED = re.compile(r"^(_CONDOR_.*|CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL)$")

# tag key → job attribute; other keys become Gpuaf<CamelCase>
TAG_ATTRS = {"portal": "GpuafPortal", "user": "GpuafUser", "session": "GpuafSession"}
TAG_ATTRS |= {"profile": "GpuafProfile", "job": "GpuafJob"}

# one device that is a whole, unshared GPU: not a MIG instance, not a -divide share
WHOLE_GPU = '!regexp("^MIG-", DeviceUuid ?: "") && (DeviceMemoryMb is undefined)'
NOT_SHARED = "(DeviceMemoryMb is undefined)"
SHARED = "(DeviceMemoryMb isnt undefined)"
MPS_SLOT = '(TARGET.GPUSharingMode =?= "mps")'


@dataclass(frozen=True)
class SubmitConfig:
    """What the backend adds to every job: accounting, MPS pipe, portal tag."""

    portal: str = "gpuaf"
    accounting_group_prefix: str = "group_"
    mps_pipe_directory: str = "/tmp/nvidia-mps"  # noqa: S108 - a path on the workers


def executable(command: tuple[str, ...]) -> tuple[str, list[str]]:
    """(executable, arguments): an absolute program as is, a bare name through /usr/bin/env."""
    if not command:
        raise refuse("The job has no command to run")
    first = command[0]
    if isinstance(first, str) and ABS_PATH.match(first) and first != "/":
        return first, list(command[1:])
    if isinstance(first, str) and COMMAND_NAME.match(first):
        return "/usr/bin/env", list(command)
    raise refuse(f"The command {first!r} is neither an absolute path nor a plain program name")


def container_image(image: object) -> str:
    if not isinstance(image, str) or not IMAGE.match(image) or MACRO.search(image):
        raise refuse(f"Container image {image!r} is not a valid image reference")
    if image.startswith("/") or image.endswith(".sif") or "://" in image:
        return image
    return f"docker://{image}"


def accounting_group(prefix: str, group: object) -> str:
    """``prefix`` + the IAM group, its ``/`` levels written as HTCondor's ``.`` subgroups."""
    if not isinstance(group, str) or not GROUP.match(group):
        raise refuse(f"Group {group!r} may only hold letters, digits and _ . / -")
    name = prefix + group.replace("/", ".")
    if not ACCOUNTING.match(name):
        raise refuse(f"Accounting group {name!r} may only hold letters, digits and _ . -")
    return name


def _device_names(models: list[GpuModel], suffix: str = "") -> str:
    names = [m.device_name + suffix for m in models]
    for name in names:
        if not DEVICE_NAME.match(name):
            raise refuse(f"GPU model name {name!r} is not usable in a requirement")
    return "(" + " || ".join(f'DeviceName == "{n}"' for n in names) + ")"


def gpu_request(profile: SliceProfile) -> dict[str, str]:
    """request_gpus, require_gpus and gpus_minimum_* for the profile's kind."""
    kind = profile.kind
    if kind == "cpu":
        return {}
    models = profile.models()
    named = bool(profile.gpu_models)
    if not models:
        raise refuse(f"The GPU models {profile.gpu_models} match no known model")
    out = {"request_gpus": str(count(profile.gpus, "gpus", 1, 16))}
    if kind == "gpu":
        parts = [_device_names(models)] if named else []
        out["require_gpus"] = " && ".join([*parts, WHOLE_GPU])
        if named:
            out["gpus_minimum_capability"] = f"{min(m.capability for m in models):.1f}"
    elif kind == "mig":
        name = profile.mig_profile
        if not isinstance(name, str) or not MIG_PROFILE.match(name):
            raise refuse(f"MIG profile {name!r} is not a MIG profile name")
        offering = [m for m in models if name in m.mig]
        if not offering:
            raise refuse(f"No known GPU model offers MIG profile {name}")
        out["require_gpus"] = f"{_device_names(offering, f' MIG {name}')} && {NOT_SHARED}"
        low = min(m.mig[name].memory_mib for m in offering) * MIG_MEMORY_TOLERANCE
        out["gpus_minimum_memory"] = str(int(low))
    else:  # mps: one share of a GPU that the node divides (-divide N) and serves with MPS
        parts = [_device_names(models)] if named else []
        out["require_gpus"] = " && ".join([*parts, SHARED])
        if profile.mps_pinned_memory is not None:
            pinned = count(profile.mps_pinned_memory, "mps_pinned_memory")
            out["gpus_minimum_memory"] = str(pinned)
        if named:
            out["gpus_minimum_capability"] = f"{min(m.capability for m in models):.1f}"
    return out


def mps_environment(profile: SliceProfile, pipe_directory: str) -> dict[str, str]:
    if profile.kind != "mps":
        return {}
    if not ABS_PATH.match(pipe_directory):
        raise refuse(f"MPS pipe directory {pipe_directory!r} is not a plain absolute path")
    pct = count(profile.mps_thread_percentage, "mps_thread_percentage", 1, 100)
    env = {"CUDA_MPS_PIPE_DIRECTORY": pipe_directory, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(pct)}
    if profile.mps_pinned_memory is not None:
        pinned = count(profile.mps_pinned_memory, "mps_pinned_memory")
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={pinned}M"
    return env


def _tags(spec_tags: Mapping[str, str], config: SubmitConfig, profile: str, user: str) -> dict:
    out = {"MY.GpuafPortal": classad_string(config.portal, "The portal name")}
    merged = {**spec_tags, "user": spec_tags.get("user", user)}
    merged["profile"] = spec_tags.get("profile", profile)
    for key, value in merged.items():
        if key == "portal":
            continue
        if not isinstance(key, str) or not TAG_KEY.match(key):
            raise refuse(f"Tag name {key!r} may only hold lower-case letters, digits and _")
        attr = TAG_ATTRS.get(key) or "Gpuaf" + "".join(p.capitalize() for p in key.split("_"))
        out[f"MY.{attr}"] = classad_string(value, f"The {key} tag")
    return out


def build(
    spec: JobSpec,
    config: SubmitConfig,
    job_dir: PurePosixPath,
    *,
    with_secrets: bool,
) -> dict[str, str]:
    """The submit description of ``spec`` as a dict of validated strings."""
    profile: SliceProfile = spec.profile
    tag_value(profile.name, "The slice profile name")
    exe, args = executable(spec.command)
    desc: dict[str, str] = {"universe": "vanilla"}
    if spec.image:
        desc = {"universe": "container", "container_image": container_image(spec.image)}
    desc["executable"] = exe
    desc["transfer_executable"] = "false"
    if args:
        desc["arguments"] = quote_arguments(args)
    trusted = mps_environment(profile, config.mps_pipe_directory)
    if with_secrets:
        trusted["GPUAF_SECRETS_FILE"] = SECRETS_FILE
    trusted["GPUAF_JOB_ID"] = "$(ClusterId).$(ProcId)"  # expanded by HTCondor at submit
    env = {
        k: v
        for k, v in spec.env.items()
        if k not in trusted and k not in spec.secrets and not CONDOR_OWNED.match(str(k))
    }
    desc["environment"] = quote_environment(env, trusted)
    desc["getenv"] = "false"
    if not ABS_PATH.match(str(job_dir)):
        raise refuse(f"The job directory {job_dir} is not a plain absolute path")
    desc["initialdir"] = str(job_dir)
    desc["should_transfer_files"] = "YES"
    desc["when_to_transfer_output"] = "ON_EXIT"
    if with_secrets:
        desc["transfer_input_files"] = SECRETS_FILE
    desc |= {"output": "job.out", "error": "job.err", "log": "job.log"}
    desc["request_cpus"] = str(count(profile.cpus, "cpus", 1, 4096))
    desc["request_memory"] = str(count(profile.memory, "memory"))  # MiB
    desc["request_disk"] = str(DISK_KIB)  # KiB
    desc |= gpu_request(profile)
    if profile.kind == "mps":
        desc["requirements"] = MPS_SLOT
    desc["allowed_execute_duration"] = str(count(profile.walltime, "walltime"))
    if spec.accounting_group:
        desc["accounting_group"] = accounting_group(
            config.accounting_group_prefix, spec.accounting_group
        )
    desc["accounting_group_user"] = tag_value(spec.user, "The user name")
    desc["batch_name"] = tag_value(spec.name, "The job name")
    desc |= _tags(spec.tags, config, profile.name, spec.user)
    return desc
