"""authority key_store and key_token: where a CA's key lives, a key file ('file') or a
PKCS#11 token ('pkcs11', with the token's label)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD/DROP COLUMN (SQLite 3.35+): a batch copy of authorities would be refused by
    # the foreign keys of certificates and crls; every CA made so far has a key file
    op.add_column('authorities', sa.Column('key_store', sa.String(16), nullable=False,
                                           server_default='file'))
    op.add_column('authorities', sa.Column('key_token', sa.String(32), nullable=True))


def downgrade() -> None:
    # the schema of before knows key files only: a CA whose key is in a token would turn
    # into a file CA whose file does not exist, silently; refused, nothing changed
    in_tokens = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM authorities WHERE key_store = 'pkcs11'")).scalar_one()
    if in_tokens:
        raise RuntimeError(
            f"cannot downgrade below 0015: {in_tokens} CA(s) keep their key in a PKCS#11 "
            "token, which the earlier schema cannot name")
    op.drop_column('authorities', 'key_token')
    op.drop_column('authorities', 'key_store')
