"""access control: who provisioned an account, sign-in throttle, API clients and claim owners

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('review_users') as batch:
        batch.add_column(sa.Column('pending', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('confirmed_by', sa.String(length=64), nullable=True))
    op.create_table('signin_throttle',
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', sa.String(length=40), nullable=False),
    sa.Column('locked_until', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('api_clients',
    sa.Column('client_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=200), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('rate_per_minute', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('client_id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('api_claim_owners',
    sa.Column('claim_id', sa.String(length=80), nullable=False),
    sa.Column('client_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('claim_id')
    )
    op.create_index(op.f('ix_api_claim_owners_client_id'), 'api_claim_owners', ['client_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_api_claim_owners_client_id'), table_name='api_claim_owners')
    op.drop_table('api_claim_owners')
    op.drop_table('api_clients')
    op.drop_table('signin_throttle')
    with op.batch_alter_table('review_users') as batch:
        batch.drop_column('confirmed_by')
        batch.drop_column('pending')
