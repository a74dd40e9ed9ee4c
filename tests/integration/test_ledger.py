"""The hash-chained audit ledger: tamper detection, claim records, export, guards, concurrency."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.kernel.db import get_engine
from aios.kernel.canonical import canonical_json
from aios.kernel.contracts import LEDGER_EVENTS
from connectors.stores.ledger import SQLITE_TRIGGERS, AuditLedger, install_postgres_guards
from governance.hashchain import GENESIS_HASH, HASHED_FIELDS, row_hash, verify_records

N = 10  # rows in the tamper template
FIELDS = (*HASHED_FIELDS, "hash")


def sample_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({
            "event": ("score", "posterior", "decision", "review_action", "payout")[i % 5],
            "actor": "models.decide@1.0.0" if i % 3 else "alice",
            "claim_id": None if i % 4 == 0 else f"CLM-{i % 3}",
            "payload": {"i": i, "p_fraud": i / 10, "route": "human_review", "note": "é ✓"},
            "versions": {"model": "aios-fraud@3", "policy": "aios-claims@2.0.0"} if i % 2 else None,
            "snapshot_hash": f"{i:064x}" if i % 2 else None,
            "trace_id": uuid.UUID(int=i).hex if i % 3 == 0 else None,
        })
    return rows


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# --------------------------------------------------------------------------------------------- basics


def test_append_links_rows_and_untouched_chain_verifies(tmp_path: Path) -> None:
    engine = sa.create_engine(sqlite_url(tmp_path / "l.db"))
    ledger = AuditLedger(engine)
    assert ledger.verify().ok and ledger.verify().checked == 0 and ledger.head() == (0, GENESIS_HASH)
    first = ledger.append("ingest_batch", "sensors.inbox@1", {"files": 2, "rows": 800})
    assert first.seq == 1 and first.prev_hash == GENESIS_HASH and first.hash == row_hash(first.to_dict(False))
    assert ledger.append_many(sample_rows(25)) == 25
    second = ledger.append("decision", "models.decide@1", {"route": "auto_approve"}, claim_id="X")
    assert second.seq == 27
    rows = ledger.rows()
    assert [r.seq for r in rows] == list(range(1, 28))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert all(a.at <= b.at for a, b in itertools.pairwise(rows))
    result = ledger.verify()
    assert result.ok and result.checked == 27 and result.first_broken_seq is None
    assert ledger.head() == (27, second.hash) == (result.head_seq, result.head_hash)
    assert ledger.append_many([]) == 0
    with pytest.raises(ValueError):
        ledger.append("Not An Event", "x")
    with pytest.raises(ValueError):
        ledger.append_many([{"event": "score", "actor": "x", "colour": "red"}])
    engine.dispose()


def test_only_the_contracts_event_names_are_accepted(tmp_path: Path) -> None:
    ledger = AuditLedger(sa.create_engine(sqlite_url(tmp_path / "e.db")))
    for event in LEDGER_EVENTS:
        ledger.append(event, "test@1", {})
    with pytest.raises(ValueError, match="LEDGER_EVENTS.*'policy_change'"):
        ledger.append("policy_change", "test@1", {})  # a well-formed name nobody declared
    with pytest.raises(ValueError, match="'replay'"):
        ledger.append_many([{"event": "score", "actor": "x"}, {"event": "replay", "actor": "x"}])
    assert [r.event for r in ledger.rows()] == list(LEDGER_EVENTS)  # the refused batch wrote nothing


def test_canonical_json() -> None:
    import numpy as np

    text = canonical_json({"b": 1, "a": [1.5, float("nan"), np.float32(0.25), np.int64(3)], "c": {"z": None, "y": "é"},
                           "t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))), "s": {3, 1}})
    assert text == ('{"a":[1.5,"NaN",0.25,3],"b":1,"c":{"y":"é","z":null},"s":[1,3],'
                    '"t":"2026-01-02T02:04:05.000000Z"}')
    assert canonical_json(json.loads(text)) == text


# --------------------------------------------------------------------------------------------- tampering


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger of N rows whose guard triggers are dropped (an attacker with file access)."""
    d = tmp_path_factory.mktemp("ledger_tamper")
    path = d / "template.db"
    engine = sa.create_engine(sqlite_url(path))  # rollback journal, so the file copies cleanly
    ledger = AuditLedger(engine)
    ledger.append_many(sample_rows(N))
    assert ledger.verify().ok
    engine.dispose()
    con = sqlite3.connect(path, isolation_level=None)
    for trig in SQLITE_TRIGGERS:
        con.execute(f"DROP TRIGGER {trig}")
    con.close()
    return path


_counter = itertools.count()


def _attacker(template: Path) -> tuple[Path, sqlite3.Connection]:
    """A fresh copy of the template and a raw sqlite3 connection in an open transaction."""
    path = template.parent / f"t{next(_counter)}.db"
    shutil.copy(template, path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("BEGIN")
    return path, con


def _done(con: sqlite3.Connection) -> None:
    con.execute("COMMIT")
    con.close()


def _verify(path: Path):  # noqa: ANN202
    engine = sa.create_engine(sqlite_url(path))
    try:
        return AuditLedger(engine, ensure_schema=False).verify()
    finally:
        engine.dispose()


def _row(con: sqlite3.Connection, seq: int) -> dict:
    cur = con.execute(f"SELECT {', '.join(FIELDS)} FROM audit_ledger WHERE seq = ?", (seq,))
    return dict(zip(FIELDS, cur.fetchone(), strict=True))


def _insert(con: sqlite3.Connection, row: dict) -> None:
    con.execute(f"INSERT INTO audit_ledger ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})",
                [row[f] for f in FIELDS])


tamper = st.one_of(
    st.tuples(st.just("edit"), st.integers(1, N), st.sampled_from(FIELDS), st.text(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.integers(1, N)),
    st.tuples(st.just("insert"), st.sampled_from(["tail_valid", "tail_garbage", "before_first", "middle"]),
              st.integers(1, N)),
    st.tuples(st.just("swap"), st.integers(1, N), st.integers(1, N)).filter(lambda t: t[1] != t[2]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=tamper)
def test_any_single_tampering_is_found_at_the_right_seq(template: Path, op: tuple) -> None:
    path, con = _attacker(template)
    try:
        kind = op[0]
        if kind == "edit":
            _, k, field, text = op
            old = _row(con, k)[field]
            new = N + 100 + k if field == "seq" else (text if text != old else text + "x")
            con.execute(f"UPDATE audit_ledger SET {field} = ? WHERE seq = ?", (new, k))
            expected = k
        elif kind == "delete":
            k = op[1]
            con.execute("DELETE FROM audit_ledger WHERE seq = ?", (k,))
            expected = k
        elif kind == "insert":
            where, k = op[1], op[2]
            last = _row(con, N)
            forged = {**last, "actor": "mallory", "event": "payout", "payload": '{"amount":99999}'}
            if where == "tail_valid":  # a perfectly chained row, appended behind the ledger's back
                forged.update(seq=N + 1, prev_hash=last["hash"])
                forged["hash"] = row_hash(forged)
                expected = N + 1
            elif where == "tail_garbage":
                forged.update(seq=N + 1, prev_hash="f" * 64, hash="e" * 64)
                expected = N + 1
            elif where == "before_first":
                forged.update(seq=-k, prev_hash=GENESIS_HASH)
                forged["hash"] = row_hash(forged)
                expected = -k
            else:  # make room at seq k by renumbering k..N upwards, then forge a valid row at k
                for s in range(N, k - 1, -1):
                    con.execute("UPDATE audit_ledger SET seq = seq + 1 WHERE seq = ?", (s,))
                forged.update(seq=k, prev_hash=_row(con, k - 1)["hash"] if k > 1 else GENESIS_HASH)
                forged["hash"] = row_hash(forged)
                expected = k + 1  # the forged row itself is consistent; the next one no longer is
            _insert(con, forged)
        else:
            _, i, j = op
            a, b = _row(con, i), _row(con, j)
            for seq, src in ((i, b), (j, a)):
                con.execute(f"UPDATE audit_ledger SET {', '.join(f'{f} = ?' for f in FIELDS if f != 'seq')} "
                            "WHERE seq = ?", [src[f] for f in FIELDS if f != "seq"] + [seq])
            expected = min(i, j)
    finally:
        _done(con)
    result = _verify(path)
    path.unlink()
    assert not result.ok, op
    assert result.first_broken_seq == expected, (op, result)
    assert result.reason


def test_untouched_copy_verifies_and_verify_against_published_head(template: Path) -> None:
    path, con = _attacker(template)
    _done(con)
    engine = sa.create_engine(sqlite_url(path))
    ledger = AuditLedger(engine, ensure_schema=False)
    head = ledger.head()
    assert ledger.verify(expected_head=head).ok
    assert not ledger.verify(expected_head=(3, "0" * 64)).ok
    assert ledger.verify(expected_head=(N + 5, head[1])).first_broken_seq == N + 1
    engine.dispose()


def test_rewritten_tail_is_caught_only_by_the_published_head(template: Path) -> None:
    """An attacker who rewrites the last row *and* re-chains the head defeats verify() alone,
    not verify(expected_head=...) with a head published before."""
    path, con = _attacker(template)
    published = (N, _row(con, N)["hash"])
    row = _row(con, N)
    row["payload"] = '{"amount":1000000}'
    row["hash"] = row_hash(row)
    con.execute("UPDATE audit_ledger SET payload = ?, hash = ? WHERE seq = ?", (row["payload"], row["hash"], N))
    con.execute("UPDATE audit_ledger_head SET hash = ? WHERE id = 1", (row["hash"],))
    _done(con)
    engine = sa.create_engine(sqlite_url(path))
    ledger = AuditLedger(engine, ensure_schema=False)
    assert ledger.verify().ok
    result = ledger.verify(expected_head=published)
    assert not result.ok and result.first_broken_seq == N
    engine.dispose()


def test_sqlite_guards_refuse_update_and_delete(tmp_path: Path) -> None:
    engine = sa.create_engine(sqlite_url(tmp_path / "g.db"))
    ledger = AuditLedger(engine)
    AuditLedger(engine)  # installing twice is fine
    ledger.append_many(sample_rows(3))
    for stmt in ("UPDATE audit_ledger SET actor = 'mallory' WHERE seq = 2",
                 "DELETE FROM audit_ledger WHERE seq = 3",
                 "UPDATE audit_ledger_head SET seq = 1",
                 "UPDATE audit_ledger_head SET seq = 4, hash = 'x'",
                 "DELETE FROM audit_ledger_head"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only|only moves forward|refused"):
            with engine.begin() as conn:
                conn.exec_driver_sql(stmt)
    assert ledger.verify().ok and ledger.count() == 3
    engine.dispose()


def test_append_refuses_when_head_and_last_row_disagree(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    engine = sa.create_engine(sqlite_url(path))
    ledger = AuditLedger(engine)
    ledger.append_many(sample_rows(3))
    con = sqlite3.connect(path, isolation_level=None)
    for trig in SQLITE_TRIGGERS:
        con.execute(f"DROP TRIGGER {trig}")
    con.execute("DELETE FROM audit_ledger WHERE seq = 3")
    con.close()
    from connectors.stores.ledger import LedgerError

    with pytest.raises(LedgerError, match="does not match"):
        ledger.append("score", "x")
    assert ledger.verify().first_broken_seq == 3
    engine.dispose()


# --------------------------------------------------------------------------------------------- records, export


def test_claim_record_joins_all_events(tmp_path: Path) -> None:
    engine = sa.create_engine(sqlite_url(tmp_path / "c.db"))
    ledger = AuditLedger(engine)
    snap = "ab" * 32
    ledger.append("ingest_batch", "sensors.inbox@1", {"rows": 2})
    ledger.append_many([
        {"event": "score", "actor": "models.classifier@3", "claim_id": "C1", "payload": {"score": 0.3},
         "versions": {"classifier": "aios-fraud@3"}, "snapshot_hash": snap, "trace_id": "t1"},
        {"event": "score", "actor": "models.classifier@3", "claim_id": "C2", "payload": {"score": 0.01}},
        {"event": "decision", "actor": "models.decide@1", "claim_id": "C1",
         "payload": {"route": "human_review", "p_fraud": 0.2},
         "versions": {"bayes": "bn@2", "policy": "aios-claims@2.0.0"}, "snapshot_hash": snap, "trace_id": "t1"},
    ])
    ledger.append("review_action", "alice", {"action": "approve", "note": "ok"}, claim_id="C1")
    ledger.append("review_action", "bob", {"action": "second_approve"}, claim_id="C1")
    ledger.append("payout", "connectors.payout@1", {"amount": 12000.0, "currency": "EUR", "status": "paid"},
                  claim_id="C1")
    ledger.append("payout", "connectors.payout@1", {"amount": 5.0, "status": "failed"}, claim_id="C1")
    rec = ledger.claim_record("C1")
    assert [e["event"] for e in rec["events"]] == ["score", "decision", "review_action", "review_action",
                                                  "payout", "payout"]
    assert rec["route"] == "human_review" and rec["decision"]["p_fraud"] == 0.2
    assert rec["snapshot_hash"] == snap and rec["snapshot_hashes"] == [snap]
    assert rec["versions"] == {"classifier": "aios-fraud@3", "bayes": "bn@2", "policy": "aios-claims@2.0.0"}
    assert rec["reviewers"] == ["alice", "bob"] and rec["reviews"][0]["action"] == "approve"
    assert rec["paid_amount"] == 12000.0 and len(rec["payouts"]) == 2
    assert rec["rows_intact"] is True
    assert ledger.claim_record("nope")["events"] == []
    engine.dispose()


def test_export_filters_by_time(tmp_path: Path) -> None:
    times = iter([datetime(2026, 1, d, 12, tzinfo=timezone.utc) for d in range(1, 6)])
    engine = sa.create_engine(sqlite_url(tmp_path / "e.db"))
    ledger = AuditLedger(engine, clock=lambda: next(times))
    for d in range(1, 6):
        ledger.append("score", "m@1", {"day": d}, claim_id=f"C{d}")
    rows = list(ledger.export("2026-01-02", "2026-01-04"))
    assert [r["payload"]["day"] for r in rows] == [2, 3]
    assert [r["payload"]["day"] for r in ledger.export(datetime(2026, 1, 4, 12, tzinfo=timezone.utc))] == [4, 5]
    assert [r["payload"]["day"] for r in ledger.export(to_ts="2026-01-02T12:00:00Z")] == [1]
    assert [r["payload"]["day"] for r in ledger.export("2026-01-03T13:00:00+01:00", "2026-01-03T13:00:00")] == [3]
    assert all(row_hash(r) == r["hash"] for r in rows)
    assert verify_records(rows, start_seq=rows[0]["seq"], prev_hash=rows[0]["prev_hash"]).ok
    assert len(list(ledger.export())) == 5
    engine.dispose()


def test_audit_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from aios.kernel.settings import get_settings
    from aios.cli.audit import audit_app

    db = tmp_path / "cli.db"
    monkeypatch.setenv("AIOS_DATABASE_URL", sqlite_url(db))
    get_settings.cache_clear()
    try:
        ledger = AuditLedger(get_engine(sqlite_url(db)))
        ledger.append("decision", "models.decide@1", {"route": "refer_siu"}, claim_id="C9")
        ledger.append("score", "models.classifier@3", {"score": 0.9}, claim_id="C8")
        runner = CliRunner()
        ok = runner.invoke(audit_app, ["verify"])
        assert ok.exit_code == 0 and "ledger OK" in ok.output
        shown = runner.invoke(audit_app, ["show", "C9"])
        assert shown.exit_code == 0 and "refer_siu" in shown.output
        assert runner.invoke(audit_app, ["show", "nope"]).exit_code == 1
        out = tmp_path / "x.jsonl"
        exp = runner.invoke(audit_app, ["export", "--from", "2000-01-01", "--to", "2999-01-01", "--out", str(out)])
        assert exp.exit_code == 0
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["seq"] for r in lines] == [1, 2] and all(row_hash(r) == r["hash"] for r in lines)
        get_engine(sqlite_url(db)).dispose()
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("DROP TRIGGER audit_ledger_no_update")
        con.execute("UPDATE audit_ledger SET payload = '{\"route\":\"auto_approve\"}' WHERE seq = 1")
        con.close()
        bad = runner.invoke(audit_app, ["verify"])
        assert bad.exit_code == 1 and "seq 1" in bad.output and "edited" in bad.output
    finally:
        get_engine(sqlite_url(db)).dispose()
        get_settings.cache_clear()


# --------------------------------------------------------------------------------------------- concurrency

def _process_worker(url: str, name: str, n: int) -> None:
    """Runs in a forked child process: its own engine and connections, appending on its own."""
    engine = get_engine.__wrapped__(url)  # a fresh engine: never touch the parent's pooled connections
    ledger = AuditLedger(engine)
    for i in range(n):
        if i % 10 == 9:
            ledger.append_many([{"event": "score", "actor": name, "claim_id": f"{name}-{i}-{j}"} for j in range(5)])
        else:
            ledger.append("score", name, {"i": i}, claim_id=f"{name}-{i}")
    engine.dispose()


def _hammer_threads(url: str, threads: int = 4, per_thread: int = 30) -> int:
    """Append concurrently from threads (each through its own pooled connection); return the row count."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(k: int) -> None:
        try:
            ledger = AuditLedger(get_engine(url))
            barrier.wait(timeout=30)
            for i in range(per_thread):
                if i % 10 == 9:
                    ledger.append_many([{"event": "score", "actor": f"t{k}", "claim_id": f"{k}-{i}-{j}"}
                                        for j in range(5)])
                else:
                    ledger.append("score", f"t{k}", {"i": i}, claim_id=f"{k}-{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in pool)
    per = sum(5 if i % 10 == 9 else 1 for i in range(per_thread))
    return threads * per


def _hammer_processes(url: str, procs: int = 2, per_proc: int = 30) -> int:
    """Append concurrently from separate processes (forked: a fresh interpreter would spend seconds
    importing SQLAlchemy on this machine); return the row count."""
    ctx = multiprocessing.get_context("fork")
    ps = [ctx.Process(target=_process_worker, args=(url, f"p{k}", per_proc)) for k in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in ps), [p.exitcode for p in ps]
    return procs * sum(5 if i % 10 == 9 else 1 for i in range(per_proc))


def _check_chain(url: str, expected_rows: int) -> None:
    ledger = AuditLedger(get_engine(url))
    result = ledger.verify()
    assert result.ok, result
    assert result.checked == expected_rows == ledger.count()
    assert [r.seq for r in ledger.rows()] == list(range(1, expected_rows + 1))


def test_concurrent_appends_sqlite_threads_and_processes(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "conc.db")
    n = _hammer_processes(url)  # on an empty file: they also race to create the schema and guards
    _check_chain(url, n)
    n += _hammer_threads(url)
    _check_chain(url, n)
    get_engine(url).dispose()


# --------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        reason = f"PostgreSQL not reachable on 127.0.0.1:5432: {exc}".strip()
        if os.environ.get("AIOS_REQUIRE_SERVERS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    admin.autocommit = True
    name = f"aios_test_ledger_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.server
def test_postgres_refuses_update_delete_truncate(pg_url: str) -> None:
    engine = get_engine(pg_url)
    ledger = AuditLedger(engine)
    install_postgres_guards(engine)  # idempotent
    install_postgres_guards(engine, force=True)
    ledger.append_many(sample_rows(5))
    for stmt in ("UPDATE audit_ledger SET actor = 'mallory' WHERE seq = 2",
                 "DELETE FROM audit_ledger WHERE seq = 5",
                 "TRUNCATE audit_ledger",
                 "TRUNCATE audit_ledger CASCADE",
                 "UPDATE audit_ledger_head SET seq = 1",
                 "UPDATE audit_ledger_head SET seq = 6, hash = 'x'",
                 "DELETE FROM audit_ledger_head",
                 "TRUNCATE audit_ledger_head"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only|only moves forward"):
            with engine.begin() as conn:
                conn.exec_driver_sql(stmt)
    with engine.connect() as conn:
        for priv in ("UPDATE", "DELETE", "TRUNCATE"):
            assert conn.exec_driver_sql(
                f"SELECT has_table_privilege('public', 'audit_ledger', '{priv}')").scalar() is False
    result = ledger.verify()
    assert result.ok and result.checked == 5
    assert ledger.claim_record("CLM-1")["events"]


@pytest.mark.server
def test_postgres_verify_catches_a_superuser_bypassing_the_triggers(pg_url: str) -> None:
    engine = get_engine(pg_url)
    ledger = AuditLedger(engine)
    ledger.append_many(sample_rows(6))
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # triggers off (superuser only)
        conn.exec_driver_sql("UPDATE audit_ledger SET payload = '{\"amount\":1}' WHERE seq = 4")
    result = ledger.verify()
    assert not result.ok and result.first_broken_seq == 4 and "edited" in result.reason


@pytest.mark.server
def test_postgres_concurrent_appends_keep_the_chain(pg_url: str) -> None:
    # processes first, on an empty database: they also race to create the schema and guards
    n = _hammer_processes(pg_url)
    _check_chain(pg_url, n)
    n += _hammer_threads(pg_url)
    _check_chain(pg_url, n)
