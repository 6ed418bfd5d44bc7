"""authority key_store and key_token: where a CA's key lives, a key file ('file') or a
PKCS#11 token ('pkcs11', with the token's label)

Revision ID: 0015
Revises: 0013
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('authorities') as batch:
        batch.add_column(sa.Column('key_store', sa.String(16), nullable=False,
                                   server_default='file'))
        batch.add_column(sa.Column('key_token', sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('authorities') as batch:
        batch.drop_column('key_token')
        batch.drop_column('key_store')
