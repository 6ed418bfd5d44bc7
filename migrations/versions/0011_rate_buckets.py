"""rate buckets: the rate limits (failed authentications, requests per token, link
redemptions) kept where every worker and replica sees them

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_buckets',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('level', sa.Float(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('admitted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'key', name=op.f('pk_rate_buckets'))
    )
    op.create_index('ix_rate_buckets_kind_at', 'rate_buckets', ['kind', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_rate_buckets_kind_at', table_name='rate_buckets')
    op.drop_table('rate_buckets')
