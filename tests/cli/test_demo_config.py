"""``tegata demo``'s first run writes a configuration that reads back, whatever the data
directory is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.settings import load_settings
from cli.server import _write_demo_config


@pytest.mark.parametrize("name", ["tegata-data", 'say "hi"', "back\\slash", "データ"])
def test_the_demo_configuration_names_its_passphrase_file_exactly(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / name
    config = tmp_path / "tegata.toml"
    monkeypatch.delenv("TEGATA_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("TEGATA_CONFIG", str(config))
    monkeypatch.setenv("TEGATA_DATA_DIR", str(data_dir))
    _write_demo_config()
    settings = load_settings()
    assert settings.key_passphrase_file == data_dir / "demo-passphrase"
    assert settings.passphrase() == (data_dir / "demo-passphrase").read_bytes().strip()
