"""notebook_jobs.kind and .workers: Dask clusters are recorded as jobs of kind dask

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notebook_jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="notebook")
        )
        batch.add_column(sa.Column("workers", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notebook_jobs") as batch:
        batch.drop_column("workers")
        batch.drop_column("kind")
