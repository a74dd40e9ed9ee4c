"""claim_identities (one identity per claim id across inbox, bus and API), landing_journal; message ids
stop being unique (the Pub/Sub emulator reuses them after a restart)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The Pub/Sub emulator numbers messages from 1 again after a restart: a message id no longer
    # identifies a message for good. Claims are identified by claim id (and content), dead letters
    # by message id AND payload hash.
    with op.batch_alter_table('landed_claims') as b:
        b.drop_constraint('uq_landed_claims_source_message', type_='unique')
        b.create_index('ix_landed_claims_source_message', ['source', 'message_id'], unique=False)
    op.add_column('dead_letters', sa.Column('raw_sha256', sa.String(length=64), nullable=True))
    import base64
    import hashlib

    conn = op.get_bind()
    dead = sa.table('dead_letters', sa.column('id'), sa.column('raw_b64'), sa.column('raw_sha256'))
    for row_id, raw_b64 in conn.execute(sa.select(dead.c.id, dead.c.raw_b64)).all():
        conn.execute(dead.update().where(dead.c.id == row_id).values(
            raw_sha256=hashlib.sha256(base64.b64decode(raw_b64)).hexdigest()))
    with op.batch_alter_table('dead_letters') as b:
        b.alter_column('raw_sha256', existing_type=sa.String(length=64), nullable=False)
        b.drop_constraint('uq_dead_letters_source_message', type_='unique')
        b.create_unique_constraint('uq_dead_letters_source_message_raw', ['source', 'message_id', 'raw_sha256'])
    op.create_table('claim_identities',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('claim_id', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('partition', sa.String(length=40), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('claim_id', name='uq_claim_identities_claim_id')
    )
    op.create_index('ix_claim_identities_partition', 'claim_identities', ['partition'], unique=False)
    op.create_table('landing_journal',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('landed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_landing_journal_pending', 'landing_journal', ['source', 'landed_at', 'id'], unique=False)
    # Claims landed from the bus before this revision own their ids, with the hash of what landed.
    from aios.kernel.contracts import Claim, claim_content_hash

    conn = op.get_bind()
    landed = sa.table('landed_claims', sa.column('id'), sa.column('claim_id'), sa.column('source'),
                      sa.column('partition'), sa.column('payload'), sa.column('landed_at'))
    identities = sa.table('claim_identities', sa.column('claim_id'), sa.column('content_hash'),
                          sa.column('source'), sa.column('partition'), sa.column('registered_at'))
    rows = [{"claim_id": r.claim_id, "content_hash": claim_content_hash(Claim.model_validate_json(r.payload)),
             "source": r.source, "partition": r.partition, "registered_at": r.landed_at}
            for r in conn.execute(sa.select(landed).order_by(landed.c.id))]
    if rows:
        conn.execute(identities.insert(), rows)


def downgrade() -> None:
    with op.batch_alter_table('dead_letters') as b:
        b.drop_constraint('uq_dead_letters_source_message_raw', type_='unique')
        b.create_unique_constraint('uq_dead_letters_source_message', ['source', 'message_id'])
        b.drop_column('raw_sha256')
    with op.batch_alter_table('landed_claims') as b:
        b.drop_index('ix_landed_claims_source_message')
        b.create_unique_constraint('uq_landed_claims_source_message', ['source', 'message_id'])
    op.drop_index('ix_landing_journal_pending', table_name='landing_journal')
    op.drop_table('landing_journal')
    op.drop_index('ix_claim_identities_partition', table_name='claim_identities')
    op.drop_table('claim_identities')
