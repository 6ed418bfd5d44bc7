"""Log output: one JSON object per line when asked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ca.settings import load_settings
from cli import logs


def test_json_log_lines_carry_time_level_logger_message_and_extras(
        monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    logs.configure(load_settings(log_format="json"))
    try:
        logging.getLogger("tegata.test").info("issued %s", "AB", extra={"request_id": "r1"})
    finally:
        logging.getLogger().handlers = []
    entry = json.loads(buffer.getvalue().strip())
    assert entry["level"] == "info" and entry["logger"] == "tegata.test"
    assert entry["message"] == "issued AB" and entry["request_id"] == "r1"
    assert entry["time"].endswith("+00:00")
