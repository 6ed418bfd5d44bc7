"""The rule of which PKCS#12 profile a bundle is made in (``compat`` or ``modern``, see
``ca.x509.pkcs12``), for every path that bundles a key: the single download, the bulk zip,
a one-time link, a user's own download.

The profile the download asks for, else the certificate's own (asked for when it was
issued: ``certificates.p12_profile``), else the tenant's default as it is at the download.
The most specific choice wins: an admin who issued ``modern`` for a device that needs it
gets ``modern`` back from any path, and one who asks a download for ``compat`` (an old
keychain) gets ``compat``. A certificate issued without a choice follows its tenant's
default, so a tenant that moves its fleet to ``modern`` needs no certificate rewritten.

The Python form (``chosen``) and the SQL form (``chosen_column``, for a read that bundles
many) stand side by side; tests/integration/test_rule_agreement.py evaluates both on the
same rows and requires them to agree.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, literal

from ca.db.models import Certificate, Tenant
from ca.x509.pkcs12 import Profile


def chosen(asked: str | None, *, issued: str | None, tenant: str) -> Profile:
    """Python: the profile of a bundle of a certificate issued in ``issued`` (None: no
    choice then) of a tenant whose default is ``tenant``."""
    return Profile.parse(asked if asked is not None else issued if issued is not None
                         else tenant)


def chosen_column(asked: Profile | None) -> ColumnElement[str]:
    """SQL: ``chosen``, for a query that joins ``Certificate`` to its ``Tenant``."""
    if asked is not None:
        return literal(asked.value)
    found: ColumnElement[str] = func.coalesce(Certificate.p12_profile, Tenant.p12_profile)
    return found
