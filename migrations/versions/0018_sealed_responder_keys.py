"""authorities.sealed_key: an OCSP responder's key sealed with the data-protection key, in
the database every replica reads (a responder made before it keeps its key file)

Revision ID: 0018
Revises: 0016
Create Date: 2026-11-30 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD/DROP COLUMN (SQLite 3.35+): a batch copy of authorities would be refused by
    # the foreign keys of certificates and crls
    op.add_column('authorities', sa.Column('sealed_key', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # responders whose key is sealed have no key file: retired, so the next OCSP question
    # makes a responder with a key file again
    op.execute(sa.text("UPDATE authorities SET retired_at = created_at "
                       "WHERE sealed_key IS NOT NULL AND retired_at IS NULL"))
    op.drop_column('authorities', 'sealed_key')
