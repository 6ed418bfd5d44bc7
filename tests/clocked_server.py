"""The API as ``tegata serve`` builds it (``build_app``), under uvicorn in its own process,
on a fixed clock: for tests against real server processes whose outcome depends on the time
(a rate limit refills with it). ``python -m tests.clocked_server --port N``; the instant is
``TEGATA_TEST_NOW`` (ISO 8601 with its offset), the rest is the usual TEGATA_* settings."""

from __future__ import annotations

import argparse
import datetime as dt
import os

import uvicorn

from api.app import build_app
from ca.clock import FixedClock
from ca.service import build_service
from ca.settings import load_settings

NOW_VARIABLE = "TEGATA_TEST_NOW"
# for tests.served.serving(..., module=CLOCKED)
CLOCKED = ("tests.clocked_server",)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    settings = load_settings()
    clock = FixedClock(dt.datetime.fromisoformat(os.environ[NOW_VARIABLE]))
    app = build_app(settings, service=build_service(settings, clock=clock))
    # proxy_headers off, as under tegata serve (granian): X-Forwarded-For is api.clientip's
    # to read, not uvicorn's, whose middleware would rewrite the peer from loopback first
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", server_header=False,
                proxy_headers=False)


if __name__ == "__main__":
    main()
