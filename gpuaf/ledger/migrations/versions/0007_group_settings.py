"""group_settings: admins' changes to a group's quota and allowed slices

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_settings",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("concurrent_slices", sa.Integer(), nullable=True),
        sa.Column("gpu_hours_per_month", sa.Float(), nullable=True),
        sa.Column("profiles", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("group_settings")
