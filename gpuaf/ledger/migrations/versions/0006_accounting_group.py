"""sessions and notebook jobs: the group their use is accounted to

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("sessions", "notebook_jobs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("group_name", sa.String(255), nullable=True))
    op.create_index("ix_sessions_group", "sessions", ["group_name"])


def downgrade() -> None:
    op.drop_index("ix_sessions_group", table_name="sessions")
    for table in ("notebook_jobs", "sessions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("group_name")
