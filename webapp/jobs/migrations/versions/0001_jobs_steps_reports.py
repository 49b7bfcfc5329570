"""jobs, steps and reports

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    # A job database made before migrations existed already has some of these tables: keep them as they are.
    if "jobs" not in existing:
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(80), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("stage", sa.String(16), nullable=False),
            sa.Column("options", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Column("pages_total", sa.Integer, nullable=False),
            sa.Column("pages_done", sa.Integer, nullable=False, server_default="0"),
            sa.Column("error", sa.Text),
            sa.Column("error_type", sa.String(64)),
            sa.Column("book_token", sa.String(128), unique=True),
            sa.Column("book_expires_at", sa.Float),
            sa.Column("book_version", sa.Integer, nullable=False, server_default="0"),
            sa.Column("parent_id", sa.String(80)),
            sa.Column("client", sa.String(128)),
        )
        op.create_index("jobs_status", "jobs", ["status"])
    if "steps" not in existing:
        op.create_table(
            "steps",
            sa.Column("job_id", sa.String(80), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("data", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
    if "reports" not in existing:
        op.create_table(
            "reports",
            sa.Column("id", sa.String(80), primary_key=True),
            sa.Column("job_id", sa.String(80), nullable=False),
            sa.Column("page", sa.Integer, nullable=False),
            sa.Column("what", sa.String(16), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("action", sa.String(16), nullable=False),
            sa.Column("client", sa.String(128)),
            sa.Column("created_at", sa.Float, nullable=False),
        )
        op.create_index("reports_created", "reports", ["created_at"])


def downgrade() -> None:
    op.drop_table("reports")
    op.drop_table("steps")
    op.drop_table("jobs")
