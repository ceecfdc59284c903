"""notebook jobs and their items

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notebook_jobs",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("idempotency_key", sa.String(36), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=True),
        sa.Column("walltime_s", sa.Integer(), nullable=False),
        sa.Column("gpu_share", sa.Float(), nullable=False),
        sa.Column("output_dir", sa.Text(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("secrets_file", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.UniqueConstraint("user_name", "idempotency_key", name="uq_notebook_jobs_user_key"),
    )
    op.create_index("ix_notebook_jobs_user_created", "notebook_jobs", ["user_name", "created_at"])
    op.create_index("ix_notebook_jobs_state", "notebook_jobs", ["state"])
    op.create_table(
        "notebook_job_items",
        sa.Column(
            "job_id",
            sa.String(80),
            sa.ForeignKey("notebook_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("index", sa.Integer(), primary_key=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("notebook_job_items")
    op.drop_index("ix_notebook_jobs_state", table_name="notebook_jobs")
    op.drop_index("ix_notebook_jobs_user_created", table_name="notebook_jobs")
    op.drop_table("notebook_jobs")
