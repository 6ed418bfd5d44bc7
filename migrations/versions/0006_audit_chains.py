"""audit chains: one hash chain per tenant and one for the operator, each with its anchor

Every existing event goes to the operator's chain (``chain`` 0), where it was already linked
in id order, and the existing anchor becomes that chain's: an existing log verifies as it
did, and its head is the operator chain's head.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('audit_events', sa.Column('chain', sa.Integer(), server_default=sa.text('0'),
                                            nullable=False))
    op.create_index('ix_audit_events_chain_id', 'audit_events', ['chain', 'id'], unique=False)
    op.add_column('audit_anchor', sa.Column('chain', sa.Integer(), server_default=sa.text('0'),
                                            nullable=False))
    op.create_index(op.f('ix_audit_anchor_chain'), 'audit_anchor', ['chain'], unique=True)


def downgrade() -> None:
    split = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM audit_events WHERE chain <> 0")).scalar()
    if split:
        # the tenants' chains cannot be folded back into one without rewriting every hash
        raise RuntimeError(f"{split} audit events are in tenants' chains: revision 0006 "
                           "cannot be undone without breaking the log")
    op.drop_index(op.f('ix_audit_anchor_chain'), table_name='audit_anchor')
    with op.batch_alter_table('audit_anchor') as batch:
        batch.drop_column('chain')
    op.drop_index('ix_audit_events_chain_id', table_name='audit_events')
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_column('chain')
