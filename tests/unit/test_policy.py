"""Policy-as-code: CEL policy files, their tables, load-time checks, reloads, vectorised routing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from governance.policy import (
    POLICY_DIR,
    ROUTES,
    PolicyError,
    PolicySet,
    load_policy_set,
    policy_set_in_force,
    reload_policy_set,
    run_policy_tables,
)


@pytest.fixture(scope="module")
def policy() -> PolicySet:
    return load_policy_set()


@pytest.fixture()
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of governance/policies/ to break."""
    d = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, d)
    return d


def edit(path: Path, old: str, new: str) -> int:
    """Replace `old` (which must occur once) by `new`; return the 1-based line where it was."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new))
    return line


def refused(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy_set(path)
    return str(info.value)


# --------------------------------------------------------------------------------------------- tables


def test_policy_tables_pass(policy: PolicySet) -> None:
    failures = run_policy_tables(policy)
    assert failures == [], "\n".join(map(str, failures))
    assert {p.kind for p in policy.policies.values()} == {"routing", "four_eyes", "payout", "rbac", "pii", "content"}
    assert all(p.tests for p in policy.policies.values())


def test_failing_table_row_is_reported_with_file_and_line(policy_dir: Path) -> None:
    line = edit(policy_dir / "rbac.yaml", "{role: admin, action: approve}, expect: false",
                "{role: admin, action: approve}, expect: true")
    failures = run_policy_tables(load_policy_set(policy_dir))  # loading runs no table
    assert len(failures) == 1
    assert f"rbac.yaml:{line}" in str(failures[0]) and "is_allowed" in str(failures[0])


def test_public_interface_keeps_the_foundation_semantics(policy: PolicySet) -> None:
    assert policy.label == f"{policy.policy_id}@{policy.version}"
    assert policy.four_eyes_amount == 10000.0
    p = np.array([0.01, 0.039, 0.04, 0.2, 0.35, 0.9, 0.01, 0.01])
    a = np.array([100.0, 15000.0, 100.0, 100.0, 100.0, 100.0, 15000.01, 1e6])
    assert policy.route(p, a).tolist() == ["auto_approve", "auto_approve", "human_review", "human_review",
                                           "refer_siu", "refer_siu", "human_review", "human_review"]
    assert policy.route([np.nan, 0.01], [100.0, np.nan]).tolist() == ["human_review", "human_review"]
    assert policy.versions["routing"] == "claims-routing@1.1.0"
    assert len(policy.digest) == 64


# --------------------------------------------------------------------------------------------- refusals


def test_cel_syntax_error_is_refused_naming_file_line_rule(policy_dir: Path) -> None:
    line = edit(policy_dir / "routing.yaml", "when: p_fraud >= REFER_SIU_MIN_P", "when: p_fraud >== REFER_SIU_MIN_P")
    msg = refused(policy_dir)
    assert f"routing.yaml:{line}:" in msg
    assert "route.refer_siu" in msg and "parse error" in msg


def test_yaml_syntax_error_is_refused_naming_file_and_line(policy_dir: Path) -> None:
    line = edit(policy_dir / "payout.yaml", "  MAX_PAYOUT: 250000.0", "  MAX_PAYOUT: [250000.0")
    msg = refused(policy_dir)
    assert "payout.yaml:" in msg and "YAML" in msg
    assert int(re.search(r"payout\.yaml:(\d+)", msg).group(1)) >= line


def test_type_error_on_default_sample_is_refused(policy_dir: Path) -> None:
    line = edit(policy_dir / "payout.yaml", "when: amount <= 0.0", "when: amount <= 'nothing'")
    msg = refused(policy_dir)
    assert f"payout.yaml:{line}:" in msg and "may_pay.non_positive" in msg


def test_type_error_reached_only_by_table_inputs_is_refused(policy_dir: Path) -> None:
    # short-circuit hides the error for the default sample (role ""), the table's inputs reach it
    line = edit(policy_dir / "rbac.yaml", "role in GRANTS && action in GRANTS[role]",
                "role in GRANTS && action + 1 == 2")
    msg = refused(policy_dir)
    assert "rbac.yaml:" in msg and "is_allowed" in msg and "sample input" in msg
    assert int(re.search(r"rbac\.yaml:(\d+)", msg).group(1)) == line - 1  # the `expr:` key line


def test_wrong_result_type_is_refused(policy_dir: Path) -> None:
    line = edit(policy_dir / "four_eyes.yaml", "expr: amount > FOUR_EYES_AMOUNT", "expr: amount")
    msg = refused(policy_dir)
    assert f"four_eyes.yaml:{line}:" in msg and "'required'" in msg and "declared bool" in msg


def test_unknown_variable_is_refused(policy_dir: Path) -> None:
    line = edit(policy_dir / "four_eyes.yaml", "expr: amount > FOUR_EYES_AMOUNT", "expr: amount > FOUR_EYE_AMOUNT")
    msg = refused(policy_dir)
    assert f"four_eyes.yaml:{line}:" in msg and "'required'" in msg
    assert "unknown variable" in msg and "FOUR_EYE_AMOUNT" in msg


def test_comprehension_variables_are_not_unknown(policy: PolicySet) -> None:
    # pii.text_pii uses TEXT_PATTERNS.filter(k, ...): `k` is bound by the macro
    assert "k" in policy.policies["pii"].rules["text_pii"].program.variables()


def test_interface_mismatch_and_stray_files_are_refused(policy_dir: Path) -> None:
    edit(policy_dir / "rbac.yaml", "inputs: {role: string, action: string}", "inputs: {role: string, verb: string}")
    assert "rbac.yaml" in refused(policy_dir)
    shutil.copy(POLICY_DIR / "rbac.yaml", policy_dir / "rbac.yaml")
    (policy_dir / "extra.yaml").write_text((POLICY_DIR / "rbac.yaml").read_text())
    assert "not listed" in refused(policy_dir)


def test_rule_without_table_row_and_duplicate_keys_are_refused(policy_dir: Path) -> None:
    text = (policy_dir / "four_eyes.yaml").read_text()
    (policy_dir / "four_eyes.yaml").write_text(re.sub(r"  - \{rule: required.*\n", "", text))
    assert "has no row in the `tests` table" in refused(policy_dir)
    shutil.copy(POLICY_DIR / "four_eyes.yaml", policy_dir / "four_eyes.yaml")
    edit(policy_dir / "four_eyes.yaml", "  REQUIRED_SENIOR_APPROVALS: 2",
         "  REQUIRED_SENIOR_APPROVALS: 2\n  FOUR_EYES_AMOUNT: 5.0")
    assert "duplicate key" in refused(policy_dir)


def test_routing_rules_must_be_piecewise_constant(policy_dir: Path) -> None:
    routing = policy_dir / "routing.yaml"
    edit(routing, "when: p_fraud >= REFER_SIU_MIN_P", "when: p_fraud * 2.0 >= REFER_SIU_MIN_P")
    assert "may only compare" in refused(policy_dir)
    shutil.copy(POLICY_DIR / "routing.yaml", routing)
    edit(routing, "when: p_fraud >= REFER_SIU_MIN_P", "when: p_fraud * 100000.0 >= amount || p_fraud >= REFER_SIU_MIN_P")
    assert "may only compare" in refused(policy_dir)
    shutil.copy(POLICY_DIR / "routing.yaml", routing)
    edit(routing, "when: p_fraud >= REFER_SIU_MIN_P", "when: p_fraud >= REFER_SIU_MIN_P || p_fraud > amount")
    assert "not constant" in refused(policy_dir)


# --------------------------------------------------------------------------------------------- reload


def test_refused_reload_keeps_previous_policy_in_force(policy_dir: Path) -> None:
    before = load_policy_set(policy_dir)

    edit(policy_dir / "routing.yaml", "when: p_fraud >= REFER_SIU_MIN_P", "when: p_fraud >= REFER_SIU_MIN")
    result = reload_policy_set(before)
    assert not result and result.policy_set is before
    assert "REFER_SIU_MIN" in str(result.error)
    assert result.policy_set.route([0.5], [10.0]).tolist() == ["refer_siu"]  # old policy still routes

    # a set that loads but whose tables fail is refused too
    shutil.copy(POLICY_DIR / "routing.yaml", policy_dir / "routing.yaml")
    edit(policy_dir / "routing.yaml", "REFER_SIU_MIN_P: 0.35", "REFER_SIU_MIN_P: 0.5")
    load_policy_set(policy_dir)  # parses and checks fine
    result = reload_policy_set(before)
    assert not result and result.policy_set is before and "table" in str(result.error)

    # a good new version is taken
    edit(policy_dir / "routing.yaml", "{p_fraud: 0.35, amount: 100.0}, expect: refer_siu",
         "{p_fraud: 0.35, amount: 100.0}, expect: human_review")
    edit(policy_dir / "routing.yaml", "version: \"1.1.0\"", "version: \"1.2.0\"")
    edit(policy_dir / "policyset.yaml", "version: \"2.1.0\"", "version: \"2.2.0\"")
    result = reload_policy_set(before)
    assert result.ok and result.policy_set is not before and result.policy_set.digest != before.digest
    assert result.policy_set.label.endswith("@2.2.0") and result.policy_set.versions["routing"].endswith("@1.2.0")
    assert result.policy_set.route([0.4], [10.0]).tolist() == ["human_review"]


def test_each_policy_file_is_read_once_and_hashed_from_the_bytes_parsed(policy_dir: Path, monkeypatch) -> None:
    reads: dict[str, int] = {}
    real = Path.read_bytes

    def counted(self: Path) -> bytes:
        reads[self.name] = reads.get(self.name, 0) + 1
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counted)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: pytest.fail(f"{self} read as text a second time"))
    loaded = load_policy_set(policy_dir)
    assert reads == {p.name: 1 for p in policy_dir.glob("*.yaml")}
    for policy in loaded.policies.values():
        assert policy.digest == hashlib.sha256(real(policy.path)).hexdigest()


def test_one_policy_set_per_process_until_a_file_changes(policy_dir: Path) -> None:
    first = policy_set_in_force(policy_dir)
    assert policy_set_in_force(policy_dir) is first
    assert policy_set_in_force(policy_dir / "policyset.yaml") is first
    edit(policy_dir / "policyset.yaml", "version: \"2.1.0\"", "version: \"2.1.1\"")
    again = policy_set_in_force(policy_dir)
    assert again is not first and again.label.endswith("@2.1.1")


def test_reload_policy_set_function(policy: PolicySet, policy_dir: Path) -> None:
    edit(policy_dir / "pii.yaml", "expr: \"!(field in PII_FIELDS) || role in PII_ROLES\"",
         "expr: \"!(field in PII_FIELDS) || role in PII_ROLE\"")
    result = reload_policy_set(policy, policy_dir)
    assert not result.ok and result.policy_set is policy and "pii.yaml" in str(result.error)
    shutil.copy(POLICY_DIR / "pii.yaml", policy_dir / "pii.yaml")
    result = reload_policy_set(policy, policy_dir)
    assert result.ok and result.policy_set is not policy and result.policy_set.digest == policy.digest


# --------------------------------------------------------------------------------------------- routing


def _random_inputs(thresholds: list[float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    a = rng.random(n) * 200_000.0
    # a third of the values sit exactly on, or one ulp either side of, a threshold
    special = np.array(sorted({x for t in thresholds for x in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf))}
                              | {0.0, -0.0, np.inf, -np.inf}))
    for arr in (p, a):
        idx = rng.choice(n, n // 3, replace=False)
        arr[idx] = rng.choice(special, len(idx))
    p[rng.choice(n, 20, replace=False)] = np.nan
    a[rng.choice(n, 20, replace=False)] = np.nan
    return p, a


def test_vectorised_route_equals_per_claim_cel(policy: PolicySet) -> None:
    p, a = _random_inputs(list(policy._routing.thresholds), 10_000, seed=1)
    fast = policy.route(p, a)
    slow = [policy.route_one(pi, ai) for pi, ai in zip(p, a, strict=True)]
    assert fast.tolist() == slow
    assert set(fast) <= set(ROUTES)


def test_vectorised_route_equals_per_claim_cel_on_a_complex_policy(policy_dir: Path) -> None:
    routing = policy_dir / "routing.yaml"
    text = routing.read_text()
    start = text.index("    cases:")
    end = text.index("tests:")
    routing.write_text(text[:start] + """    cases:
      - name: huge
        when: amount > 100000.0 && !(p_fraud < 0.1)
        then: refer_siu
      - name: exact
        when: p_fraud == 0.2 || amount == 777.0
        then: human_review
      - name: band
        when: "(p_fraud > 0.5 ? amount >= 50.0 : amount < 20.0) && p_fraud != 0.7"
        then: reject
      - name: auto
        when: p_fraud <= AUTO_APPROVE_MAX_P && amount < AUTO_APPROVE_MAX_AMOUNT
        then: auto_approve
    default: human_review
""" + "tests:\n  - {rule: route, input: {p_fraud: 0.01, amount: 800.0}, expect: auto_approve}\n")
    ps = load_policy_set(policy_dir)
    assert {0.1, 0.2, 0.5, 0.7, 777.0, 100000.0, 0.04} <= set(ps._routing.thresholds)
    p, a = _random_inputs([*ps._routing.thresholds, 0.1], 10_000, seed=2)
    a[:3000] = np.where(np.arange(3000) % 2 == 0, 777.0, 19.999)
    assert ps.route(p, a).tolist() == [ps.route_one(pi, ai) for pi, ai in zip(p, a, strict=True)]


def test_route_is_vectorised_over_a_million_claims(policy: PolicySet) -> None:
    """Shape and agreement only; its speed is measured in the benchmark, not here."""
    rng = np.random.default_rng(3)
    p, a = rng.random(1_000_000), rng.random(1_000_000) * 40_000
    out = policy.route(p, a)
    assert out.shape == (1_000_000,)
    idx = rng.choice(1_000_000, 200, replace=False)
    assert out[idx].tolist() == [policy.route_one(p[i], a[i]) for i in idx]
    assert policy.route(p.reshape(1000, 1000), a.reshape(1000, 1000)).shape == (1000, 1000)


def test_explain_route_names_the_case(policy: PolicySet) -> None:
    assert policy.explain_route(0.5, 1.0) == "claims-routing@1.1.0:route.refer_siu"
    assert policy.explain_route(0.2, 1.0) == "claims-routing@1.1.0:route.default"


# --------------------------------------------------------------------------------------------- roles, payouts


def test_role_matrix_sanity(policy: PolicySet) -> None:
    writes = {"claim_case", "approve", "reject", "escalate", "second_approve", "manage_users"}
    assert set(policy.roles) == {"reviewer", "senior_reviewer", "analyst", "auditor", "admin"}
    matrix = {(r, a): policy.is_allowed(r, a) for r in policy.roles for a in policy.actions}
    for (role, action), ok in matrix.items():
        if role in ("analyst", "auditor") and action in writes:
            assert not ok, (role, action)
        if action == "second_approve":
            assert ok == (role == "senior_reviewer")
        if action == "manage_users":
            assert ok == (role == "admin")
        if action == "view_audit":
            assert ok == (role == "auditor")
    assert matrix[("reviewer", "approve")] and matrix[("senior_reviewer", "approve")]
    assert not matrix[("admin", "approve")] and not matrix[("admin", "view_case")]
    assert all(matrix[(r, "view_queue")] for r in ("reviewer", "senior_reviewer", "analyst", "auditor"))
    assert not policy.is_allowed("intruder", "view_queue") and not policy.is_allowed("reviewer", "drop_tables")


def test_four_eyes_and_payout_limits(policy: PolicySet) -> None:
    assert not policy.needs_four_eyes(10_000) and policy.needs_four_eyes(10_000.01)
    reviewer, senior, senior2 = ("rita", "reviewer"), ("sam", "senior_reviewer"), ("sue", "senior_reviewer")
    assert policy.may_pay(900, "auto_approve")
    assert not policy.may_pay(20_000, "auto_approve")
    assert policy.may_pay(5_000, "human_review", [reviewer])
    assert not policy.may_pay(5_000, "human_review", [("ann", "analyst")])  # analysts cannot approve
    assert not policy.may_pay(20_000, "human_review", [reviewer, senior])
    assert not policy.may_pay(20_000, "human_review", [senior, senior])  # the same person twice
    verdict = policy.may_pay(20_000, "human_review", [senior, {"user": "sue", "role": "senior_reviewer"}])
    assert verdict and verdict.rule == "payout-limits@1.0.0:may_pay.reviewed"
    assert policy.four_eyes_satisfied(20_000, [senior, senior2])
    assert not policy.may_pay(500_000, "human_review", [senior, senior2])
    assert policy.may_pay(500, "refer_siu", [senior, senior2]).rule.endswith("may_pay.default")
    assert policy.may_pay(5_000, "human_review", 1) and not policy.may_pay(20_000, "human_review", 2)
    assert policy.may_pay(20_000, "human_review", 2, senior_approvals=2)


# --------------------------------------------------------------------------------------------- PII, content


def test_pii_never_reaches_an_analyst(policy: PolicySet) -> None:
    pii = {"customer_name": "Wilhelmina Quack", "policyholder_name": "Quentin Quack", "email": "w.quack@example.org",
           "phone": "+49 30 1234567", "iban": "DE89370400440532013000", "address": "Entenweg 5, Duckburg",
           "date_of_birth": "1961-04-01", "national_id": "T22000129", "bank_account": "0532013000"}
    assert set(pii) == policy.pii_fields
    record = {"claim_id": "CLM-1", "amount": 1234.5, **pii,
              "description": "Call Wilhelmina Quack on +49 30 1234567 or w.quack@example.org; "
                             "pay to DE89 3704 0044 0532 0130 00",
              "history": [{"email": "w.quack@example.org", "note": "iban DE89370400440532013000"}],
              "notes": {"free": "customer_name=Wilhelmina Quack"}}
    for role in ("analyst", "auditor", "admin", "nobody"):
        out = policy.redact(record, role, names=[pii["customer_name"], pii["policyholder_name"]])
        text = json.dumps(out)
        for value in pii.values():
            assert value not in text, (role, value)
        assert "Quack" not in text and "DE89" not in text
        assert out["claim_id"] == "CLM-1" and out["amount"] == 1234.5 and out["email"] == "[REDACTED]"
    assert record["email"] == "w.quack@example.org"  # the input is not modified
    for role in ("reviewer", "senior_reviewer"):
        assert policy.redact(record, role) == record


def test_redact_text_masks_emails_ibans_phones_names(policy: PolicySet) -> None:
    line = ("2026-11-20T10:00:00Z claim=CLM-7 amount=15000.00 user jane.doe@example.com iban DE89 3704 0044 "
            "0532 0130 00 or GB29NWBK60161331926819 phone +44 20 7946 0958 customer_name=Jane Doe")
    out = policy.redact_text(line)
    for secret in ("jane.doe@example.com", "DE89", "GB29NWBK60161331926819", "7946", "Jane Doe"):
        assert secret not in out, (secret, out)
    assert "[REDACTED:email]" in out and "[REDACTED:iban]" in out and "[REDACTED:phone]" in out
    assert "customer_name=[REDACTED:name]" in out
    assert "2026-11-20T10:00:00Z claim=CLM-7 amount=15000.00" in out  # dates, ids, amounts stay
    assert policy.redact_text("Paid by Jane Doe", names=["jane doe"]) == "Paid by [REDACTED:name]"
    assert policy.redact_text("nothing to hide") == "nothing to hide"


def test_content_flags(policy: PolicySet) -> None:
    assert policy.content_flags("Water damage in the kitchen after a pipe burst.") == []
    assert policy.content_flags("Pay me now or else, you bastard. Mail me: a.b@c.de") == \
        ["pii:email", "pressure", "profanity", "threat"]
    assert policy.content_flags("I will kill you") == ["threat"]


def test_evaluation_is_thread_safe(policy: PolicySet) -> None:
    errors: list[str] = []
    pol = policy.policies["four_eyes"]

    def work(k: int) -> None:
        for i in range(300):
            amount = float((i * 7 + k * 13) % 20_000)
            if pol.evaluate("required", amount=amount) != (amount > 10_000):
                errors.append(f"{k}/{i}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


# --------------------------------------------------------------------------------------------- CLI


def test_policy_check_cli(policy_dir: Path) -> None:
    from typer.testing import CliRunner

    from aios.cli.policy import policy_app

    runner = CliRunner()
    ok = runner.invoke(policy_app, ["check", str(policy_dir)])
    assert ok.exit_code == 0, ok.output
    assert "all policy tables pass" in ok.output
    edit(policy_dir / "content.yaml", "expect: [threat, pressure]", "expect: [threat]")
    bad = runner.invoke(policy_app, ["check", str(policy_dir)])
    assert bad.exit_code == 1 and "FAIL" in bad.output
    edit(policy_dir / "content.yaml", "expr: FLAG_PATTERNS.filter", "expr: FLAG_PATTERNS.filtr")
    bad = runner.invoke(policy_app, ["check", str(policy_dir)])
    assert bad.exit_code == 1 and "refused" in bad.output
