"""replayed_revocations: revocations replayed from a gateway's CRL after a restore, of
certificates the restored database does not hold (issued after the backup)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 06:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ca.db.types import UTCDateTime

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'replayed_revocations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('authority_id', sa.Integer(), nullable=False),
        sa.Column('serial', sa.String(length=40), nullable=False),
        sa.Column('revoked_at', UTCDateTime(), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('crl_entry', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'],
                                name=op.f('fk_replayed_revocations_authority_id_authorities')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_replayed_revocations')),
        sa.UniqueConstraint('authority_id', 'serial',
                            name=op.f('uq_replayed_revocations_authority_id')),
    )


def downgrade() -> None:
    # a kept revocation (of a certificate issued after a restored backup) would leave the
    # CRLs with the table: its certificate would pass CRL-mode gateways; refused
    kept = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM replayed_revocations")).scalar_one()
    if kept:
        raise RuntimeError(
            f"cannot downgrade below 0016: {kept} revocation(s) kept from a replayed CRL "
            "would leave every CRL")
    op.drop_table('replayed_revocations')
