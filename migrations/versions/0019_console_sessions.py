"""console_sessions: web console sessions, each made once from an admin or operator token

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ca.db.types import UTCDateTime

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('last_seen_at', UTCDateTime(), nullable=False),
        sa.Column('ended_at', UTCDateTime(), nullable=True),
        sa.Column('source_ip', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'],
                                name=op.f('fk_console_sessions_token_id_api_tokens')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_sessions')),
        sa.UniqueConstraint('secret_hash', name=op.f('uq_console_sessions_secret_hash')),
    )
    op.create_index(op.f('ix_console_sessions_token_id'), 'console_sessions', ['token_id'])


def downgrade() -> None:
    # sessions are short-lived: dropping them signs everyone out of the console, nothing more
    op.drop_index(op.f('ix_console_sessions_token_id'), table_name='console_sessions')
    op.drop_table('console_sessions')
