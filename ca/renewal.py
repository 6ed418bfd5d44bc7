"""The rule of renewal at half the validity: a CRL is made anew once half of the time from
its thisUpdate to its nextUpdate has gone, so that its nextUpdate never passes while Tegata
runs (a gateway rejects every client once it has: SPEC, "Publishing status to gateways").
The instant itself is due (``now >= renew_at``); a CA with no CRL yet is due at once.

Each CA keeps the instant in ``authorities.crl_renew_at`` (set by every publication, and by
migration 0012 for the CRLs it found), so that a lifecycle pass finds what is due by an
index. The Python form (``renew_at``, ``due``, ``stale``) and the SQL form (``due_filter``)
stand side by side; tests/integration/test_rule_agreement.py evaluates both on the same
rows and requires them to agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import ColumnElement, or_

from ca.db.models import Authority


class Dated(Protocol):
    """A CRL's dates: a ``Crl`` row, or one made and not yet recorded."""

    @property
    def this_update(self) -> dt.datetime: ...
    @property
    def next_update(self) -> dt.datetime: ...


# --- Python --------------------------------------------------------------------------------


def renew_at(crl: Dated) -> dt.datetime:
    """Half-way from the CRL's thisUpdate to its nextUpdate."""
    return crl.this_update + (crl.next_update - crl.this_update) / 2


def due(renew: dt.datetime | None, *, now: dt.datetime) -> bool:
    """A CA whose CRL is to be renewed at ``renew`` (None: it has none yet) is due ``now``."""
    return renew is None or renew <= now


def stale(crl: Dated, *, now: dt.datetime) -> bool:
    """The CRL is past half its validity: time to make the next one."""
    return due(renew_at(crl), now=now)


# --- SQL -----------------------------------------------------------------------------------


def due_filter(*, now: dt.datetime) -> ColumnElement[bool]:
    """SQL on ``Authority``: ``due(crl_renew_at)``."""
    return or_(Authority.crl_renew_at.is_(None), Authority.crl_renew_at <= now)
