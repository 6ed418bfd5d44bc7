"""certificate crl_entry: each revoked certificate keeps its CRL entry's DER, so that a CRL
lays stored entries end to end instead of encoding every one again

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 23:20:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from ca import serials
from ca.db.types import UTCDateTime
from ca.x509 import crl

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

CERTIFICATES = sa.table("certificates", sa.column("id", sa.Integer),
                        sa.column("serial", sa.String), sa.column("revoked_at", UTCDateTime()),
                        sa.column("revocation_reason", sa.String),
                        sa.column("crl_entry", sa.LargeBinary))
BATCH = 5_000


def upgrade() -> None:
    op.add_column('certificates', sa.Column('crl_entry', sa.LargeBinary(), nullable=True))
    backfill(op.get_bind())
    # a CRL reads its kept entries from this index alone, never the rows
    op.create_index('ix_certificates_crl_entries', 'certificates',
                    ['authority_id', 'not_after', 'crl_entry'], unique=False,
                    sqlite_where=sa.text('crl_entry IS NOT NULL'),
                    postgresql_where=sa.text('crl_entry IS NOT NULL'))
    # revoked rows that kept no entry: none, but a CRL must look without a table scan
    unkept = sa.text('revoked_at IS NOT NULL AND crl_entry IS NULL')
    op.create_index('ix_certificates_unkept_entries', 'certificates', ['authority_id'],
                    unique=False, sqlite_where=unkept, postgresql_where=unkept)


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would be refused by the
    # foreign keys of holds and key_material
    op.drop_index('ix_certificates_unkept_entries', table_name='certificates')
    op.drop_index('ix_certificates_crl_entries', table_name='certificates')
    op.drop_column('certificates', 'crl_entry')


def backfill(connection: sa.Connection) -> None:
    """Every revoked certificate gets the entry its CRLs have listed. A certificate on hold
    gets none: a hold's entry is made with each CRL, since it changes when one of several
    holds is lifted and goes when the last is (ca/service/crls.py)."""
    after = 0
    while True:  # in batches by id: memory stays bounded whatever the number revoked
        rows = connection.execute(
            sa.select(CERTIFICATES.c.id, CERTIFICATES.c.serial, CERTIFICATES.c.revoked_at,
                      CERTIFICATES.c.revocation_reason)
            .where(CERTIFICATES.c.revoked_at.is_not(None), CERTIFICATES.c.id > after)
            .order_by(CERTIFICATES.c.id).limit(BATCH)).all()
        if not rows:
            return
        connection.execute(
            sa.update(CERTIFICATES).where(CERTIFICATES.c.id == sa.bindparam("row_id"))
            .values(crl_entry=sa.bindparam("entry")),
            [{"row_id": row_id, "entry": _entry(serial, revoked_at, reason)}
             for row_id, serial, revoked_at, reason in rows])
        after = rows[-1][0]


def _entry(serial: str, revoked_at: dt.datetime, reason: str | None) -> bytes:
    return crl.entry_der(crl.Entry(serial=serials.parse(serial), revoked_at=revoked_at,
                                   reason=reason))
