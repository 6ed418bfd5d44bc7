"""subscription suspended_at: when a tenant's subscription hold was published, so that the
grace period is counted from it as well as from the end date

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ca.db.types

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# a tenant already in its grace period: the suspension was published when its first
# subscription hold still in force was placed (a tenant without one gets its date from the
# next lifecycle run, which publishes the suspension then)
BACKFILL = sa.text(
    "UPDATE tenants SET subscription_suspended_at = ("
    " SELECT MIN(holds.placed_at) FROM holds"
    " JOIN certificates ON certificates.id = holds.certificate_id"
    " WHERE certificates.tenant_id = tenants.id AND holds.cause = 'subscription'"
    " AND holds.lifted_at IS NULL)"
    " WHERE subscription_ends_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subscription_suspended_at',
                                      ca.db.types.UTCDateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('subscription_suspended_at')
