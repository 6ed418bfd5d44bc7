"""ocsp changes: every process's kept OCSP answers follow status changes made anywhere

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ocsp_sequence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ocsp_sequence'))
    )
    op.create_table('ocsp_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ocsp_changes'))
    )
    with op.batch_alter_table('ocsp_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ocsp_changes_seq'), ['seq'], unique=False)
    # the one row every status change increments (ca.service.ocsp_feed)
    op.execute(sa.text("INSERT INTO ocsp_sequence (id, seq) VALUES (1, 0)"))


def downgrade() -> None:
    with op.batch_alter_table('ocsp_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ocsp_changes_seq'))
    op.drop_table('ocsp_changes')
    op.drop_table('ocsp_sequence')
