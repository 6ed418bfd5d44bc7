"""lifecycle due times: what a lifecycle pass must look at is found by indexed due times,
not by visiting every tenant: a tenant's next subscription instant, a CA's CRL
renewal time, certificates by expiry, and the instant the lifecycle's expiry work is done to

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ca.db.types
from ca import renewal

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

UTC = ca.db.types.UTCDateTime(timezone=True)
AUTHORITIES = sa.table("authorities", sa.column("id", sa.Integer),
                       sa.column("crl_renew_at", UTC))
CRLS = sa.table("crls", sa.column("authority_id", sa.Integer),
                sa.column("number", sa.BigInteger), sa.column("this_update", UTC),
                sa.column("next_update", UTC))
# a tenant with an end is due at it; one already past it is looked at by the next run, which
# sets its next instant (a tenant in grace: its grace end; one that ended: none)
BACKFILL_TENANTS = sa.text("UPDATE tenants SET lifecycle_due_at = subscription_ends_at"
                           " WHERE subscription_ends_at IS NOT NULL")


def upgrade() -> None:
    op.add_column('tenants', sa.Column('lifecycle_due_at', UTC, nullable=True))
    op.create_index('ix_tenants_lifecycle_due_at', 'tenants', ['lifecycle_due_at'])
    op.add_column('authorities', sa.Column('crl_renew_at', UTC, nullable=True))
    op.create_index('ix_authorities_crl_renew_at', 'authorities', ['crl_renew_at'])
    op.create_index('ix_certificates_not_after', 'certificates', ['not_after'])
    op.add_column('leases', sa.Column('done_until', UTC, nullable=True))
    op.execute(BACKFILL_TENANTS)
    backfill_crl_renewals(op.get_bind())


def downgrade() -> None:
    # plain DROP COLUMN (SQLite 3.35+), its index first: a batch copy of authorities would
    # be refused by the foreign keys of certificates and crls
    op.drop_column('leases', 'done_until')
    op.drop_index('ix_certificates_not_after', table_name='certificates')
    op.drop_index('ix_authorities_crl_renew_at', table_name='authorities')
    op.drop_column('authorities', 'crl_renew_at')
    op.drop_index('ix_tenants_lifecycle_due_at', table_name='tenants')
    op.drop_column('tenants', 'lifecycle_due_at')


def backfill_crl_renewals(connection: sa.Connection) -> None:
    """A CA's latest CRL is renewed past half its validity; a CA with none keeps NULL (due)."""
    newest = (sa.select(CRLS.c.authority_id, sa.func.max(CRLS.c.number).label("number"))
              .group_by(CRLS.c.authority_id).subquery())
    rows = connection.execute(
        sa.select(CRLS.c.authority_id, CRLS.c.this_update, CRLS.c.next_update)
        .join(newest, sa.and_(newest.c.authority_id == CRLS.c.authority_id,
                              newest.c.number == CRLS.c.number))).all()
    if rows:
        connection.execute(
            sa.update(AUTHORITIES).where(AUTHORITIES.c.id == sa.bindparam("authority"))
            .values(crl_renew_at=sa.bindparam("renew_at")),
            [{"authority": row.authority_id, "renew_at": renewal.renew_at(row)} for row in rows])
