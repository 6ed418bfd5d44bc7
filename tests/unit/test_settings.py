"""Settings refuse unsafe values and name the variable at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.errors import ConfigError
from ca.settings import load_settings, redact_url


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TEGATA_TIMEZONE", "Mars/Base", "TEGATA_TIMEZONE: 'Mars/Base' is not an IANA time zone"),
        ("TEGATA_PUBLIC_BASE_URL", "ftp://ca.example", "TEGATA_PUBLIC_BASE_URL"),
        ("TEGATA_PUBLIC_BASE_URL", "https://ca.example/?x=1", "TEGATA_PUBLIC_BASE_URL"),
        ("TEGATA_PUBLIC_BASE_URL", "https://user:pw@ca.example", "TEGATA_PUBLIC_BASE_URL"),
        ("TEGATA_DATABASE_URL", "mysql://root@localhost/x", "TEGATA_DATABASE_URL"),
        ("TEGATA_KEY_PASSPHRASE", "changeme", "TEGATA_KEY_PASSPHRASE: the passphrase is a "
                                              "placeholder"),
        ("TEGATA_KEY_PASSPHRASE", "Xq7-zz", "TEGATA_KEY_PASSPHRASE: the passphrase is shorter"),
        ("TEGATA_PORT", "70000", "TEGATA_PORT"),
        ("TEGATA_LOG_FORMAT", "xml", "TEGATA_LOG_FORMAT"),
    ],
    ids=["zone", "ftp-url", "url-query", "url-credentials", "mysql", "placeholder-passphrase",
         "short-passphrase", "port", "log-format"],
)
def test_unsafe_values_are_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    if "PASSPHRASE" in variable:
        assert value not in str(caught.value)


def test_defaults_put_everything_in_the_data_directory(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("TEGATA_DATA_DIR", str(tmp_path / "d"))
    settings = load_settings()
    assert settings.effective_database_url == f"sqlite:///{(tmp_path / 'd' / 'tegata.db')}"
    assert settings.effective_key_dir == tmp_path / "d" / "keys"
    assert settings.public_base_url == "http://127.0.0.1:8080"


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    config = tmp_path / "tegata.toml"
    config.write_text('timezone = "Asia/Tokyo"\npublic_base_url = "https://ca.example/"\n')
    monkeypatch.setenv("TEGATA_CONFIG", str(config))
    assert load_settings().timezone == "Asia/Tokyo"
    assert load_settings().public_base_url == "https://ca.example"
    monkeypatch.setenv("TEGATA_TIMEZONE", "Europe/Paris")
    assert load_settings().timezone == "Europe/Paris"


def test_unknown_toml_keys_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "tegata.toml"
    config.write_text('timezon = "Asia/Tokyo"\n')
    monkeypatch.setenv("TEGATA_CONFIG", str(config))
    with pytest.raises(ConfigError, match="TEGATA_TIMEZON"):
        load_settings()


def test_postgresql_urls_use_psycopg_3() -> None:
    url = load_settings(database_url="postgresql://u@h/db").effective_database_url
    assert url == "postgresql+psycopg://u@h/db"


def test_missing_passphrase_names_both_variables() -> None:
    with pytest.raises(ConfigError, match="TEGATA_KEY_PASSPHRASE or TEGATA_KEY_PASSPHRASE_FILE"):
        load_settings().passphrase()


def test_passphrase_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("a-long-random-passphrase\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"TEGATA_KEY_PASSPHRASE_FILE: .* readable by others"):
        load_settings(key_passphrase_file=secret).passphrase()
    secret.chmod(0o600)
    assert load_settings(key_passphrase_file=secret).passphrase() == b"a-long-random-passphrase"


def test_database_passwords_are_redacted_in_messages() -> None:
    assert redact_url("postgresql+psycopg://u:s3cret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert redact_url("postgresql+psycopg://u@h/db?sslmode=require&password=s3cret") == (
        "postgresql+psycopg://u@h/db?sslmode=require&password=***")


def test_the_settings_repr_shows_no_database_password() -> None:
    settings = load_settings(database_url="postgresql+psycopg://u:s3cret@h/db",
                             key_passphrase="a-long-random-passphrase")
    assert "s3cret" not in repr(settings) and "a-long-random" not in repr(settings)


def test_a_passphrase_file_that_is_not_utf8_is_refused_without_quoting_it(
        tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_bytes(b"a-long-random-\xffpassphrase")
    secret.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_settings(key_passphrase_file=secret).passphrase()
    assert str(caught.value) == f"TEGATA_KEY_PASSPHRASE_FILE: {secret} is not UTF-8 text"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_published_example_passphrase_is_refused() -> None:
    example = (Path(__file__).parents[2] / "keys.example" / "passphrase.example").read_text()
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings(key_passphrase=example.strip())
