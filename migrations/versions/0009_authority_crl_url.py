"""authority crl_url: a CA's CRL URL is fixed when the CA is made, so that the IDP of its
CRLs equals the CDP of the certificates it signed whatever process makes a CRL

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from cryptography import x509

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

AUTHORITIES = sa.table("authorities", sa.column("id", sa.Integer),
                       sa.column("issuer_id", sa.Integer), sa.column("kind", sa.String),
                       sa.column("der", sa.LargeBinary), sa.column("crl_url", sa.Text))
CERTIFICATES = sa.table("certificates", sa.column("id", sa.Integer),
                        sa.column("authority_id", sa.Integer), sa.column("der", sa.LargeBinary))
CRLS = sa.table("crls", sa.column("authority_id", sa.Integer), sa.column("number", sa.BigInteger),
                sa.column("der", sa.LargeBinary))


def upgrade() -> None:
    with op.batch_alter_table('authorities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crl_url', sa.Text(), nullable=True))
    backfill(op.get_bind())


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would be refused by the
    # foreign keys of certificates and crls
    op.drop_column('authorities', 'crl_url')


def backfill(connection: sa.Connection) -> None:
    """Every root and issuing CA gets the CRL URL it already published (``crl_url_of``); a
    CA that published nothing keeps NULL, and the service sets it from its settings the
    first time it needs it."""
    cas = connection.execute(sa.select(AUTHORITIES.c.id, AUTHORITIES.c.kind)
                             .where(AUTHORITIES.c.kind.in_(("root", "issuing")))
                             .order_by(AUTHORITIES.c.id)).all()
    for authority_id, kind in cas:
        url = crl_url_of(connection, authority_id, root=kind == "root")
        if url is not None:
            connection.execute(sa.update(AUTHORITIES).where(AUTHORITIES.c.id == authority_id)
                               .values(crl_url=url))


def crl_url_of(connection: sa.Connection, authority_id: int, *, root: bool) -> str | None:
    """The CRL URL a CA has published: the IDP of its newest CRL when a certificate it
    signed carries it as its CDP; else the CDP of the newest certificate it signed; else the
    newest CRL's IDP; else None.

    The newest CRL is not taken alone: before this revision a process whose public base URL
    was wrong (a shell without TEGATA_PUBLIC_BASE_URL) could make it, with an IDP no
    certificate has, and carrying that forward would lock every user out for good. The
    root's CRLs name no distribution point (they cover the root itself): its URL comes from
    the issuing CA certificates it signed.
    """
    if root:
        signed = (sa.select(AUTHORITIES.c.der)
                  .where(AUTHORITIES.c.issuer_id == authority_id,
                         AUTHORITIES.c.id != authority_id, AUTHORITIES.c.kind == "issuing")
                  .order_by(AUTHORITIES.c.id.desc()))
    else:
        signed = (sa.select(CERTIFICATES.c.der)
                  .where(CERTIFICATES.c.authority_id == authority_id)
                  .order_by(CERTIFICATES.c.id.desc()))
    newest_crl = connection.scalar(sa.select(CRLS.c.der).where(CRLS.c.authority_id == authority_id)
                                   .order_by(CRLS.c.number.desc()).limit(1))
    idp = _idp(newest_crl) if newest_crl is not None else None
    newest_cdp: str | None = None
    carried = False
    # newest first, streamed; only a CRL whose IDP no certificate has reads them all
    result = connection.execute(signed.execution_options(yield_per=500))
    try:
        for index, (der,) in enumerate(result):
            cdp = _cdp(der)
            if index == 0:
                newest_cdp = cdp
            if idp is None or cdp == idp:
                carried = idp is not None
                break
    finally:
        result.close()
    if idp is not None and (carried or newest_cdp is None):
        return idp
    return newest_cdp


def _idp(der: bytes) -> str | None:
    crl = x509.load_der_x509_crl(der)
    try:
        point = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return None
    return _uri(point.full_name)


def _cdp(der: bytes) -> str | None:
    cert = x509.load_der_x509_certificate(der)
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return None
    return _uri(points[0].full_name) if len(points) else None


def _uri(names: list[x509.GeneralName] | None) -> str | None:
    for name in names or ():
        if isinstance(name, x509.UniformResourceIdentifier):
            return name.value
    return None
