"""payout outbox: one intent per claim to pay, moved by the dispatcher to a rail's verdict

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 13:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_INDEXED = ('claim_id', 'partition', 'rail', 'status', 'batch_id')


def upgrade() -> None:
    op.create_table('payout_intents',
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('claim_id', sa.String(length=80), nullable=False),
    sa.Column('partition', sa.String(length=40), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('creditor_name', sa.String(length=140), nullable=False),
    sa.Column('creditor_iban', sa.String(length=34), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('rail', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('batch_id', sa.String(length=35), nullable=True),
    sa.Column('batch_created_at', sa.String(length=40), nullable=True),
    sa.Column('receipt', sa.String(length=120), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.Column('sent_at', sa.String(length=40), nullable=True),
    sa.Column('settled_at', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('idempotency_key')
    )
    for col in _INDEXED:
        op.create_index(op.f(f'ix_payout_intents_{col}'), 'payout_intents', [col], unique=False)


def downgrade() -> None:
    for col in _INDEXED:
        op.drop_index(op.f(f'ix_payout_intents_{col}'), table_name='payout_intents')
    op.drop_table('payout_intents')
