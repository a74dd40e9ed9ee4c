"""`aios serve --workers 2` with group commit: concurrent requests to two worker processes leave every decision
stored, snapshotted and in the audit ledger (3 rows each), and the hash chain valid, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from aios.kernel.db import ensure_tables
from aios_assets.launch import child_env
from connectors.stores.clients import TABLES as CLIENT_TABLES
from connectors.stores.clients import add_client
from connectors.documents import DocumentStore
from connectors.stores.ledger import AuditLedger
from models.generator import Book, generate_claims, to_inbox_records

pytestmark = [pytest.mark.slow]

N_CLAIMS = 80


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.db'}"
        return
    from connectors.bus.local_servers import ServerUnavailable, create_postgres_database, drop_postgres_database

    try:
        name, url = create_postgres_database(prefix="aios_test_workers_")
    except ServerUnavailable as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432: {exc}")
    yield url
    drop_postgres_database(name)


def _payloads(settings, prefix: str) -> list[dict]:
    book = Book(pd.read_parquet(settings.policies_path))
    claims, docs = generate_claims(book, date(2026, 11, 24), 1, N_CLAIMS + 20, seed=17, id_prefix=prefix)
    store = DocumentStore(settings.documents_dir)
    for claim_id, ref, text in zip(docs["claim_id"], docs["doc_ref"], docs["text"]):
        store.write_for_claim(claim_id, ref, text)  # referenced, read by the server
    out = []
    for rec in to_inbox_records(claims).head(N_CLAIMS).to_dict("records"):
        rec = {k: v for k, v in rec.items() if not k.startswith("_") and v is not None and v == v and v != ""}
        rec["document_refs"] = [r for r in str(rec.get("document_refs", "")).split(";") if r]
        out.append(rec)
    return out


def test_two_workers_under_concurrent_requests_keep_every_decision_and_one_valid_chain(trained, db_url, tmp_path):
    port = _free_port()
    env = child_env(trained)
    env["AIOS_DATABASE_URL"] = db_url
    engine = sa.create_engine(db_url)
    ensure_tables(engine, *CLIENT_TABLES)
    _, key = add_client(engine, "workers-test", ["decisions:write"], created_by="test", rate_per_minute=1_000_000)
    engine.dispose()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "aios", "serve", "--port", str(port), "--workers", "2",
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.3)
        payloads = _payloads(trained, f"W2-{port}-")
        with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=32),
                          headers={"authorization": f"Bearer {key}"}) as client:
            # both workers must have pinned before the load (each records its pin in the ledger)
            for _ in range(20):
                client.get("/readyz")
            with ThreadPoolExecutor(16) as pool:
                responses = list(pool.map(lambda p: client.post("/v1/decisions", json=p), payloads))
        assert [r.status_code for r in responses] == [200] * N_CLAIMS, responses[0].text
        decided = {r.json()["decisions"][0]["claim_id"]: r.json()["decisions"][0] for r in responses}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()

    engine = sa.create_engine(db_url)
    try:
        ledger = AuditLedger(engine, ensure_schema=False)
        assert ledger.verify().ok
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT claim_id, event, snapshot_hash FROM audit_ledger "
                                        "WHERE claim_id LIKE :p ORDER BY seq"), {"p": f"W2-{port}-%"}).all()
            stored = dict(conn.execute(sa.text("SELECT claim_id, snapshot_hash FROM decisions "
                                               "WHERE claim_id LIKE :p"), {"p": f"W2-{port}-%"}).all())
            snaps = {h for (h,) in conn.execute(sa.text("SELECT snapshot_hash FROM feature_snapshots "
                                                        "WHERE claim_id LIKE :p"), {"p": f"W2-{port}-%"})}
            pins = conn.execute(sa.text("SELECT count(*) FROM audit_ledger WHERE event = 'model_pinned'")).scalar()
    finally:
        engine.dispose()
    assert pins == 2  # two worker processes, each pinned its models once
    assert len(rows) == 3 * N_CLAIMS
    by_claim: dict[str, list[str]] = {}
    for claim_id, event, snap in rows:
        by_claim.setdefault(claim_id, []).append(event)
        assert snap == decided[claim_id]["snapshot_hash"]
    assert all(events == ["score", "posterior", "decision"] for events in by_claim.values())
    assert stored == {c: d["snapshot_hash"] for c, d in decided.items()}
    assert snaps == set(stored.values())


def test_a_group_commit_that_fails_keeps_none_of_its_writes(tmp_path):
    from aios.kernel.db import ensure_tables
    from connectors.stores.decisions import decisions_table

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    ensure_tables(engine)
    ledger = AuditLedger(engine)
    ledger.append("ingest_batch", "test@1", {"n": 1})

    def writes_then_fails(conn: sa.Connection) -> None:
        conn.execute(decisions_table.insert(), [{
            "claim_id": "G-1", "partition": "api-x", "amount": 1.0, "currency": "EUR", "score": 0.1, "p_fraud": 0.1,
            "p_fraud_low": 0.0, "p_fraud_high": 0.2, "route": "auto_approve", "rationale": "[]",
            "uncertainty_drivers": "[]", "versions": "{}", "snapshot_hash": "h", "decided_at": "now"}])
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ledger.append_many_after(writes_then_fails, [{"event": "decision", "actor": "test@1", "claim_id": "G-1"}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(decisions_table)).scalar() == 0
    assert ledger.count() == 1 and ledger.verify().ok
    n = ledger.append_many_after(lambda conn: None, [{"event": "decision", "actor": "test@1", "claim_id": "G-2"}])
    assert n == 1 and ledger.count() == 2 and ledger.verify().ok
