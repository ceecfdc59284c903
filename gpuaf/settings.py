"""The one settings file, validated by pydantic, read by the hub and the API alike.

``load_settings(path)`` reads YAML and refuses anything it does not understand with a
:class:`~gpuaf.errors.SettingsError` naming the file, the key and what is allowed.
Without a path the embedded defaults (``settings.example.yaml`` beside this module,
the documented example) are used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from gpuaf.errors import SettingsError
from gpuaf.profiles import SliceProfile
from gpuaf.settings_backends import BackendSettings
from gpuaf.settings_backends import HTCondorSettings as HTCondorSettings
from gpuaf.settings_backends import LocalBackendSettings as LocalBackendSettings
from gpuaf.settings_backends import SlurmSettings as SlurmSettings
from gpuaf.settings_base import Duration, GroupName, Port, Strict
from gpuaf.settings_errors import format_validation_error
from gpuaf.settings_jobs import HOST_PORT as HOST_PORT
from gpuaf.settings_jobs import DaskSettings, NotebookJobSettings
from gpuaf.settings_jobs import GridSiteSettings as GridSiteSettings
from gpuaf.settings_ledger import LedgerSettings as LedgerSettings

EXAMPLE = Path(__file__).with_name("settings.example.yaml")
CATALOGUE = Path(__file__).with_name("catalogue.yaml")
ENV_VAR = "GPUAF_SETTINGS"


class PortalSettings(Strict):
    host: str = Field("127.0.0.1", description="Address the public proxy listens on.")
    port: Port = Field(8000, description="Port of the public proxy: the URL users open.")
    public_url: str | None = Field(
        None, description="URL users reach the portal at, if not http://host:port/."
    )
    hub_port: Port = Field(8081, description="Port of the hub's internal API.")
    hub_ip: str = Field(
        "127.0.0.1",
        description="Address the hub's API listens on; batch jobs on other nodes must reach it.",
    )
    hub_connect_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="URL batch jobs use to reach the hub API, if not http://hub_ip:hub_port.",
    )
    proxy_api_port: Port = Field(8082, description="Port of the proxy's REST API (loopback).")
    api_port: Port = Field(8091, description="Port of the portal API service (loopback).")
    data_dir: Path = Field(
        Path("gpuaf-data"),
        description="Where the portal keeps its state; relative to the settings file.",
    )
    trusted_networks: list[IPvAnyNetwork] = Field(
        [],
        description="Client networks (CIDR) allowed to log in and call the API; empty: all.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        [],
        description="Networks (CIDR) of the proxy, besides loopback, whose X-Forwarded-For "
        "header names the client to the portal API: set it to the proxy pod's network when "
        "the proxy runs on its own (portal.proxy_api_url) and trusted_networks is used.",
    )
    service_name: str = Field(
        "portal",
        pattern=r"^[a-z][a-z0-9-]{0,30}$",
        description="Name of the API service; it is served under /services/<name>/.",
    )
    proxy_api_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="REST API of a configurable-http-proxy run on its own (e.g. its own pod); "
        "set: the hub starts no proxy and reads the proxy's token from $CONFIGPROXY_AUTH_TOKEN. "
        "Empty: the hub starts the proxy, its API on loopback (proxy_api_port).",
    )
    api_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="URL of the portal API run on its own (`gpuaf api`, e.g. its own pod) as an "
        "external service of the hub, both reading its token from $GPUAF_API_TOKEN. "
        "Empty: the hub starts the API, on loopback (api_port).",
    )
    api_ip: str = Field(
        "127.0.0.1",
        description="Address the portal API listens on (0.0.0.0 when it runs on its own).",
    )

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/") + "/"


class IAMSettings(Strict):
    issuer: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$", description="OIDC issuer URL.")
    client_id: str = Field(min_length=1, description="OIDC client registered with IAM.")
    client_secret: SecretStr = Field(
        SecretStr(""), description="The client's secret; prefer client_secret_file."
    )
    client_secret_file: Path | None = Field(
        None,
        description="File holding the client secret (e.g. a mounted Kubernetes "
        "Secret), read at start instead of client_secret.",
    )
    scopes: list[str] = Field(
        ["openid", "profile", "email"], description="Scopes asked for at login."
    )
    username_claim: str = Field(
        "preferred_username", description="Claim that becomes the hub user name."
    )
    groups_claims: list[str] = Field(
        ["wlcg.groups", "groups"],
        description="Token claims read for groups, first found wins; read exactly, "
        "a parent group is never inferred from a child.",
    )
    login_service: str = Field("IAM", description="Name shown on the login button.")
    audience: str = Field(
        "gpuaf",
        min_length=1,
        description="`aud` that IAM access tokens sent to the API must carry (WLCG profile).",
    )
    trusted_issuers: list[Annotated[str, Field(pattern=r"^https?://\S+$")]] = Field(
        [],
        description="Issuers whose access tokens the API accepts, checked before any key "
        "fetch; default: the issuer above only.",
    )
    token_leeway: int = Field(
        30, ge=0, le=60, description="Seconds of clock skew allowed on exp/nbf/iat (at most 60)."
    )
    jwks_refetch_interval: Annotated[Duration, Field(ge=10)] = Field(
        300,
        description="An unknown key id refetches the issuer's keys at most once per this long.",
    )

    @property
    def issuers(self) -> list[str]:
        return [i.rstrip("/") for i in (self.trusted_issuers or [self.issuer])]

    @model_validator(mode="before")
    @classmethod
    def _secret_from_file(cls, data: object) -> object:
        if not isinstance(data, dict) or not data.get("client_secret_file"):
            return data
        path = Path(data["client_secret_file"])
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"client_secret_file: cannot read {path} ({exc.strerror})") from exc
        given = data.get("client_secret")
        given = given.get_secret_value() if isinstance(given, SecretStr) else given
        if given and given != secret:
            raise ValueError("set client_secret or client_secret_file, not both")
        return {**data, "client_secret": secret}


class QuotaSettings(Strict):
    concurrent_slices: int | None = Field(
        None, ge=0, description="Sessions a member may hold at once; empty: no limit."
    )
    gpu_hours_per_month: float | None = Field(
        None,
        ge=0,
        description="GPU-hours a member may use per calendar month (a MIG 1g slice counts "
        "1/7 of a GPU, an MPS 25 % share a quarter); empty: no limit.",
    )


class GroupSettings(Strict):
    description: str = Field("", description="What the group is, for admins.")
    role: Literal["user", "collaboration-admin", "facility-admin"] = Field(
        "user", description="Role of the group's members; facility-admin makes hub admins."
    )
    collaboration: str | None = Field(
        None,
        description="For role collaboration-admin: the group whose members these admins "
        "see and steer; default: this group itself.",
    )
    quota: QuotaSettings = Field(
        QuotaSettings(),
        description="Limits of each member; a member of several groups gets the most generous.",
    )


class SessionSettings(Strict):
    default_url: str = Field("/lab", description="Page a started session opens on.")
    start_timeout: Duration = Field(300, description="A spawn slower than this is abandoned.")
    http_timeout: Duration = Field(60, description="Time for a started server to answer.")
    reconcile_interval: Annotated[Duration, Field(ge=1)] = Field(
        30, description="How often the ledger is brought in line with the batch system and hub."
    )
    poll_interval: Annotated[Duration, Field(ge=1)] = Field(
        30, description="How often the hub asks the batch system whether a session still runs."
    )
    connect_timeout: Annotated[Duration, Field(ge=1)] | None = Field(
        1200,
        description="A started session nobody connects to within this time is stopped and its "
        "slice freed (connected: a browser logged in to it, or its notebooks or terminals "
        "did something); empty: never.",
    )
    idle_timeout: Annotated[Duration, Field(ge=10)] | None = Field(
        3 * 3600,
        description="Sessions idle this long are stopped by jupyterhub-idle-culler. Activity is "
        "what the session agent sees: notebook kernels running or producing output, terminal "
        "use, or GPU utilisation at or above gpu_busy_utilisation; an open browser tab alone "
        "is not activity. Empty: never cull.",
    )
    gpu_busy_utilisation: Annotated[int, Field(ge=1, le=100)] = Field(
        10,
        description="GPU utilisation (percent) from which a session's GPU counts as busy. "
        "NVML gives no utilisation for MIG instances: there only kernels and terminals count.",
    )
    named_servers: bool = Field(
        True,
        description="Users may hold several named sessions at once (e.g. one CPU and one GPU "
        "session), within their group's quota of concurrent slices.",
    )
    singleuser_cmd: list[str] = Field(
        ["jupyterhub-singleuser"], min_length=1, description="Command of the session's server."
    )
    environment: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
        Annotated[str, Field(pattern=r"^[^\n\r\x00]*$")],
    ] = Field(
        {},
        description="Environment of every session job, e.g. PATH on the workers. The hub's "
        "own environment is never passed on (local sessions inherit its PATH).",
    )
    image: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$",
        description="Container image of sessions and batch jobs (Apptainer/docker reference).",
    )


class Settings(Strict):
    portal: PortalSettings = PortalSettings()
    iam: IAMSettings
    groups: dict[GroupName, GroupSettings] = Field(min_length=1)
    profiles: list[SliceProfile] = Field(
        default_factory=lambda: default_catalogue(),
        min_length=1,
        description="The slice catalogue; default: gpuaf's catalogue (catalogue.yaml).",
    )
    backend: BackendSettings = BackendSettings()
    sessions: SessionSettings = SessionSettings()
    ledger: LedgerSettings = LedgerSettings()
    notebooks: NotebookJobSettings = NotebookJobSettings()
    dask: DaskSettings = DaskSettings()

    _source: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        for name, group in self.groups.items():
            if group.collaboration is not None and group.collaboration not in self.groups:
                raise ValueError(
                    f"groups.{name}.collaboration: unknown group {group.collaboration!r}; "
                    f"declared groups: {', '.join(self.groups)}"
                )
        seen: set[str] = set()
        for i, profile in enumerate(self.profiles):
            if profile.name in seen:
                raise ValueError(f"profiles[{i}].name: {profile.name!r} is used twice")
            seen.add(profile.name)
            for group in profile.groups:
                if group not in self.groups:
                    raise ValueError(
                        f"profiles[{i}].groups: unknown group {group!r}; "
                        f"declared groups: {', '.join(self.groups)}"
                    )
        return self

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def data_dir(self) -> Path:
        base = self._source.parent if self._source and self._source != EXAMPLE else Path.cwd()
        return (base / self.portal.data_dir).resolve()

    @property
    def ledger_url(self) -> str:
        return self.ledger.url or f"sqlite:///{self.data_dir / 'gpuaf.sqlite'}"

    def profile(self, name: str) -> SliceProfile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def profiles_for(self, groups: set[str] | list[str]) -> list[SliceProfile]:
        """The profiles a member of exactly these groups may book."""
        mine = set(groups)
        return [p for p in self.profiles if not p.groups or mine & set(p.groups)]

    def with_overrides(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys of some sections replaced, validated again."""
        data = self.model_dump(mode="python")
        data["iam"]["client_secret"] = self.iam.client_secret.get_secret_value()
        for section, values in sections.items():
            _deep_update(data.setdefault(section, {}), values)
        try:
            new = Settings.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(format_validation_error(exc, "command-line options")) from exc
        new._source = self._source
        return new


def default_catalogue() -> list[SliceProfile]:
    """The slice catalogue shipped with gpuaf (A100/H100/H200 MIG, MPS, whole GPUs, CPU)."""
    rows = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    return [SliceProfile.model_validate(row) for row in rows]


def _deep_update(target: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read, validate and return the settings (None: ``$GPUAF_SETTINGS`` or the defaults)."""
    if path is None:
        path = os.environ.get(ENV_VAR) or EXAMPLE
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the settings file must be a mapping of sections")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, str(path))) from exc
    settings._source = path.resolve()
    return settings
