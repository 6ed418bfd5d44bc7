"""Tegata's settings: ``TEGATA_*`` environment variables over an optional ``tegata.toml``.

Built by ``load_settings()``, never at import time. Unsafe values are refused with a
``ConfigError`` whose message names the variable at fault.
"""

from __future__ import annotations

import os
import stat
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ca.errors import ConfigError
from ca.token import TokenAccess, read_pin_file

ENV_PREFIX = "TEGATA_"
DEFAULT_CONFIG_FILE = "tegata.toml"

# Values copied from examples and docs: a CA key protected by one of these is not protected.
_PLACEHOLDER_PASSPHRASES = {
    "changeme", "change-me", "change_me", "password", "passphrase", "secret", "tegata",
    "example", "test", "dev", "development", "insecure", "placeholder", "xxxxxxxx",
    "keys.example-not-a-secret",  # published in keys.example/
}
MIN_PASSPHRASE_LENGTH = 12
MIN_AUDIT_RETENTION_DAYS = 90


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Path("tegata-data")
    database_url: str | None = Field(default=None, repr=False)  # may hold a password
    key_dir: Path | None = None
    key_passphrase: SecretStr | None = None
    key_passphrase_file: Path | None = None
    # CA keys in a PKCS#11 token (ca/token.py): the module, and a file (mode 0600) holding
    # the user PIN; the token's label is kept with each CA
    pkcs11_module: Path | None = None
    pkcs11_pin_file: Path | None = None
    public_base_url: str = "http://127.0.0.1:8080"
    timezone: str = "UTC"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    migrate_on_start: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # proxies whose X-Forwarded-For is believed for the client's address (CIDR list)
    trusted_proxies: list[str] = Field(default_factory=list)
    # how often the server applies time-driven transitions and renews CRLs (0: never)
    lifecycle_interval_seconds: int = Field(default=60, ge=0, le=3600)
    # requests a token may make per minute, a minute's worth at once (0: no limit; gateway
    # tokens, which answer nginx's sub-request for every client request, are never limited)
    token_requests_per_minute: int = Field(default=600, ge=0, le=1_000_000)
    # audit events older than this are removed by the lifecycle run (0: kept for ever)
    audit_retention_days: int = Field(default=0, ge=0, le=36_500)
    # one-time self-download links, and the mail that carries them
    link_validity_days: int = Field(default=7, ge=1, le=90)
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_from: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # --- the HTTP server (cli/server.py) ---
    # worker processes of `tegata serve` (None: one per core, os.cpu_count())
    workers: int | None = Field(default=None, ge=1, le=256)
    # a request whose headers are not all in within this time is closed (slowloris); an
    # idle kept-alive connection is closed after it too
    header_timeout_seconds: int = Field(default=10, ge=1, le=60)
    # open connections the server holds at once, all workers together (None: what the open
    # files limit allows); beyond it new connections wait in the listen queue
    max_connections: int | None = Field(default=None, ge=1, le=10_000_000)
    # a request body whose next chunk does not come within this time is answered 408 and its
    # connection closed (granian bounds headers only): a slow POST cannot hold a connection
    body_timeout_seconds: float = Field(default=10, gt=0, le=60)
    # one log line per request (tegata.access): peer, method, path, status, milliseconds
    access_log: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("TEGATA_CONFIG", DEFAULT_CONFIG_FILE)
        toml = TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file))
        return (init_settings, env_settings, toml)

    @field_validator("public_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("the public base URL must not carry a query, fragment or credentials")
        if any(ch.isspace() or ord(ch) < 0x20 for ch in value):
            raise ValueError("the public base URL must not contain spaces or control characters")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network[:64]!r} is not an IP network") from None
        return value

    @field_validator("audit_retention_days")
    @classmethod
    def _check_retention(cls, value: int) -> int:
        if 0 < value < MIN_AUDIT_RETENTION_DAYS:
            raise ValueError(f"must be 0 (keep for ever) or at least {MIN_AUDIT_RETENTION_DAYS} "
                             "days: a shorter log cannot answer for a certificate's lifetime")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        load_zone(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0]
        if scheme not in ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"):
            raise ValueError(f"scheme {scheme!r} is not supported; use sqlite:/// or "
                             "postgresql+psycopg://")
        try:  # a typo is the deployment's to fix; the message never holds the URL (a password)
            parts = urlsplit(value)
            parts.port  # noqa: B018 (it raises for a port out of range)
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.netloc.count("@") > 1:  # the driver would take the rest for the host
            raise ValueError("an @ in the user name or password must be written %40")
        if scheme == "postgresql":
            value = "postgresql+psycopg" + value[len("postgresql"):]
        return value

    @field_validator("key_passphrase")
    @classmethod
    def _check_passphrase(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_passphrase(value.get_secret_value())
        return value

    # --- derived values -------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tegata.db').resolve()}"

    @property
    def effective_key_dir(self) -> Path:
        return self.key_dir if self.key_dir is not None else self.data_dir / "keys"

    def passphrase_source(self) -> str:
        """The variable the passphrase comes from, for messages."""
        if self.key_passphrase_file is not None and self.key_passphrase is None:
            return env_name("key_passphrase_file")
        return env_name("key_passphrase")

    def token_access(self, label: str) -> TokenAccess:
        """Where the token labelled ``label`` is, and its PIN (read now, from its file)."""
        missing = [env_name(name) for name in ("pkcs11_module", "pkcs11_pin_file")
                   if getattr(self, name) is None]
        if missing:
            raise ConfigError(f"a CA key is in PKCS#11 token {label!r}, and {' and '.join(missing)}"
                              f" {'is' if len(missing) == 1 else 'are'} not set",
                              field=missing[0])
        assert self.pkcs11_module is not None and self.pkcs11_pin_file is not None
        pin = read_pin_file(self.pkcs11_pin_file, what=f"{env_name('pkcs11_pin_file')}:")
        return TokenAccess(module=self.pkcs11_module, label=label,
                           pin_file=self.pkcs11_pin_file, pin=pin)

    def passphrase(self) -> bytes:
        """The CA key passphrase, from TEGATA_KEY_PASSPHRASE or TEGATA_KEY_PASSPHRASE_FILE."""
        if self.key_passphrase is not None and self.key_passphrase_file is not None:
            raise ConfigError(f"both {env_name('key_passphrase')} and "
                              f"{env_name('key_passphrase_file')} are set; keep one",
                              field=env_name("key_passphrase"))
        if self.key_passphrase is not None:
            return self.key_passphrase.get_secret_value().encode()
        if self.key_passphrase_file is not None:
            return read_passphrase_file(self.key_passphrase_file)
        raise ConfigError(
            f"no CA key passphrase: set {env_name('key_passphrase')} or "
            f"{env_name('key_passphrase_file')}",
            field=env_name("key_passphrase"),
        )


def check_passphrase(value: str) -> None:
    if value.strip().lower() in _PLACEHOLDER_PASSPHRASES:
        raise ValueError("the passphrase is a placeholder; choose a random one")
    if len(value) < MIN_PASSPHRASE_LENGTH:
        raise ValueError(f"the passphrase is shorter than {MIN_PASSPHRASE_LENGTH} characters")


def read_passphrase_file(path: Path) -> bytes:
    var = env_name("key_passphrase_file")
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {path}: {exc.strerror}", field=var) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{var}: {path} is readable by others (mode {info.st_mode & 0o777:04o});"
                          f" run chmod 600 {path}", field=var)
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {path}: {exc.strerror}", field=var) from None
    except UnicodeDecodeError:  # its message would quote a byte of the passphrase
        raise ConfigError(f"{var}: {path} is not UTF-8 text", field=var) from None
    try:
        check_passphrase(text)
    except ValueError as exc:
        raise ConfigError(f"{var}: {path}: {exc}", field=var) from None
    return text.encode()


def load_zone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA zone by name; a ``ValueError`` naming it when there is no such zone."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"{name[:64]!r} is not an IANA time zone")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not an IANA time zone") from None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; a ``ConfigError`` naming the variable when a value is refused."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ("?",)
        field = str(loc[0])
        var = env_name(field)
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(f"{var}: {message}", field=var) from None
    except (OSError, ValueError) as exc:  # a malformed tegata.toml
        raise ConfigError(f"configuration file: {exc}") from None


def redact_url(url: str) -> str:
    """A database URL fit for messages: the password, in the authority or as a query
    parameter (``?password=``), replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc if parts.password is None else parts.netloc.replace(
        f":{parts.password}@", ":***@", 1)
    query = "&".join(f"{key}=***" if "password" in key.lower() else f"{key}={value}"
                     for key, _, value in (pair.partition("=")
                                           for pair in parts.query.split("&") if pair))
    return parts._replace(netloc=netloc, query=query).geturl()
