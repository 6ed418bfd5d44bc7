"""audit anchor: where the kept audit log starts after retention removed the oldest events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ca.db.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_anchor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('first_id', sa.BigInteger(), nullable=False),
    sa.Column('removed', sa.BigInteger(), nullable=False),
    sa.Column('pruned_at', ca.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_anchor'))
    )


def downgrade() -> None:
    op.drop_table('audit_anchor')
