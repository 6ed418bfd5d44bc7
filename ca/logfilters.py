"""Log filters that keep secrets out of log records, for every process that logs: the API's
access log (``api.traffic``) and the CLI's handler (``cli.logs``) both put them on."""

from __future__ import annotations

import logging
import re

from ca.service.links import PREFIX

_LINK_TOKEN = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]+")


class RedactLinkTokens(logging.Filter):
    """Blanks link tokens in log records: uvicorn's access log writes every request's path,
    and a link's path is its secret (``GET /d/tdl_...``). Put it on the log handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _LINK_TOKEN.sub(PREFIX + "…", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_LINK_TOKEN.sub(PREFIX + "…", a) if isinstance(a, str) else a
                                for a in record.args)
        return True
