"""sessions: stored GPU summary (peak memory, energy) and how far its samples are compacted

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("gpu_peak_memory_mib", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("gpu_energy_wh", sa.Float(), nullable=True))
        batch.add_column(sa.Column("gpu_summary_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("samples_compacted_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("samples_compacted_until")
        batch.drop_column("gpu_summary_at")
        batch.drop_column("gpu_energy_wh")
        batch.drop_column("gpu_peak_memory_mib")
