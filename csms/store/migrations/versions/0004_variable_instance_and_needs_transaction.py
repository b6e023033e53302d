"""VariableSetResult.variable_instance; EvChargingNeeds.transaction_id

Existing results keep "" as their instance (their variable may still carry it as
"Name[instance]"); existing needs are bound to no transaction.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:08:36.214255
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ev_charging_needs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True)
        )

    with op.batch_alter_table("variable_set_result", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "variable_instance",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("variable_set_result", schema=None) as batch_op:
        batch_op.drop_column("variable_instance")

    with op.batch_alter_table("ev_charging_needs", schema=None) as batch_op:
        batch_op.drop_column("transaction_id")
