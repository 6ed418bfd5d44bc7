"""leases: one lifecycle run at a time across processes, and a lease per running job

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ca.db.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=100), nullable=True),
    sa.Column('taken_at', ca.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', ca.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    # a job left running by a server that stopped before this release has no lease: the
    # first poll or lifecycle run marks it failed
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_expires_at',
                                      ca.db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('lease_expires_at')
    op.drop_table('leases')
