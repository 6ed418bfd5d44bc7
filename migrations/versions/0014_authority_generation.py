"""authority generation: a tenant's issuing CAs (and the roots) are numbered 1, 2, ... as
they are rolled over; the newest one not retired issues, the older ones keep signing CRLs
and OCSP answers for the certificates they issued; a later root keeps its link certificates

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every CA made before is the first of its line; a plain ADD COLUMN (a batch copy of
    # the table would be refused by the foreign keys of certificates and crls)
    op.add_column('authorities', sa.Column('generation', sa.Integer(), nullable=False,
                                           server_default=sa.text('1')))
    # a database that holds several CAs of one line (taken back below 0014 by an alembic of
    # before its downgrade refused that): numbered in the order they were made, so the
    # unique index below can be made and the newest one issues
    op.execute(sa.text(
        "UPDATE authorities SET generation = (SELECT count(*) FROM authorities AS earlier "
        "WHERE earlier.kind = authorities.kind AND earlier.id <= authorities.id AND "
        "(earlier.tenant_id = authorities.tenant_id OR (earlier.tenant_id IS NULL AND "
        "authorities.tenant_id IS NULL))) WHERE kind IN ('root', 'issuing')"))
    # a later root's link certificates: its key certified by the root before it, and the
    # key of the root before it certified by it
    op.add_column('authorities', sa.Column('link_from_previous', sa.LargeBinary(),
                                           nullable=True))
    op.add_column('authorities', sa.Column('link_to_previous', sa.LargeBinary(),
                                           nullable=True))
    # one CA per generation (a root's tenant_id is NULL, which a unique index lets repeat:
    # the root's rollover locks the current root's row instead)
    op.create_index('ux_authorities_generation', 'authorities',
                    ['tenant_id', 'kind', 'generation'], unique=True,
                    sqlite_where=sa.text("kind IN ('root', 'issuing')"),
                    postgresql_where=sa.text("kind IN ('root', 'issuing')"))


def downgrade() -> None:
    # the schema of before has no place for a rollover's CAs (generations 2 and later, a
    # root's link certificates): dropping the columns would lose which CA issues and the
    # links, silently; refused, nothing changed
    later = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM authorities WHERE generation > 1")).scalar_one()
    if later:
        raise RuntimeError(
            f"cannot downgrade below 0014: {later} CA(s) of a rollover (generation 2 or "
            "later) would lose their generation and link certificates; restore a backup "
            "made before the first rollover instead")
    op.drop_index('ux_authorities_generation', table_name='authorities')
    # a plain DROP COLUMN (SQLite 3.35+), for the same reason
    op.drop_column('authorities', 'link_to_previous')
    op.drop_column('authorities', 'link_from_previous')
    op.drop_column('authorities', 'generation')
