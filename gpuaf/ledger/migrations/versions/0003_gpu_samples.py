"""gpu_samples: the session agent's NVML readings; sessions.gpu_note: what it could not read

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpu_samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("sessions.id", ondelete="CASCADE", name="fk_gpu_samples_session"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("memory_used_mib", sa.Integer(), nullable=False),
        sa.Column("memory_total_mib", sa.Integer(), nullable=False),
        sa.Column("utilisation_pct", sa.Float(), nullable=True),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("energy_j", sa.Float(), nullable=True),
    )
    op.create_index("ix_gpu_samples_session_at", "gpu_samples", ["session_id", "at"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("gpu_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("gpu_note")
    op.drop_index("ix_gpu_samples_session_at", table_name="gpu_samples")
    op.drop_table("gpu_samples")
