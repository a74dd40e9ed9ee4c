"""The review workflow: who may do what to a case and when, the four-eyes and separation-of-duties rules,
and account provisioning with dual control.

The state machine of a case (stored by `connectors.stores.reviews`): `new` → claimed (locked for
LOCK_TTL) → approve / reject / escalate. Approving records an approval; the case becomes `approved`
when the policy's four-eyes rule is satisfied by the distinct approvers so far (amounts converted to the
policy's currency with the versioned fx rates), else it waits (`awaiting_second`) for a further approval
from someone else, who needs `second_approve`. Nobody approves a case twice, and nobody approves a case
already approved by an account they provisioned, or by the account that provisioned theirs (the four_eyes
policy's `independent` rule). Every stored action goes to the audit ledger with the reviewer as actor.

Errors are domain errors (`aios.kernel.errors`), mapped to HTTP statuses by the service.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aios.kernel.errors import Conflict, InvalidInput, NotAllowed
from aios.kernel.tracing import claim_trace_hex
from connectors.stores import accounts, reviews, sessions
from connectors.stores.accounts import User, utcnow
from connectors.stores.audit import ledger, record_user_change
from connectors.stores.reviews import APPROVED, REJECTED, WAITING

DECISIONS = ("approve", "reject", "escalate")
REASON_MAX = 2000


class ReviewPolicy(Protocol):
    """What the workflow asks of the policy set (governance.policy.PolicySet satisfies it)."""

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the rbac policy knows."""

    def is_allowed(self, role: str, action: str) -> bool:
        """Whether `role` may do `action` (rbac policy)."""

    def four_eyes_satisfied(self, amount: float, approvals: Any, senior_approvals: int | None = None,
                            currency: str | None = None) -> bool:
        """Whether the approvals meet the four-eyes rule; `approvals` is a count or (user, role) pairs."""

    def redact_text(self, text: str, names: Iterable[str] = ()) -> str:
        """`text` with personal data and the given `names` masked."""


def leaning_threshold(policy: Any) -> float:
    """The posterior above which the model leans towards fraud: the middle of the human-review band
    of the routing policy (its auto-approve and refer-to-SIU limits), 0.5 if the policy names none."""
    try:
        c = policy.policies["routing"].constants
        return (float(c["AUTO_APPROVE_MAX_P"]) + float(c["REFER_SIU_MIN_P"])) / 2
    except (AttributeError, KeyError, TypeError, ValueError):
        return 0.5


def model_leaning(p_fraud: float, threshold: float) -> str:
    """`reject` when the posterior leans to fraud, else `approve`."""
    return "reject" if float(p_fraud) >= threshold else "approve"


@dataclass(frozen=True)
class ActionResult:
    """What a review action did: the action stored (id 0 when nothing was stored), the case's status and
    stage after it, a message for the user and the payload for the audit ledger."""

    action_id: int
    action: str
    status: str
    stage: str
    message: str
    payload: dict[str, Any]


def _require(policy: ReviewPolicy, user: User, action: str, what: str) -> None:
    if not policy.is_allowed(user.role, action):
        raise NotAllowed(f"your role ({user.role}) may not {what}")


def _audited(fn):
    """Record each stored review action in the audit ledger (actor: the reviewer), whatever calls it."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> ActionResult:
        result = fn(*args, **kwargs)
        if result.action_id:
            call = signature.bind(*args, **kwargs).arguments
            label = getattr(call["policy"], "label", None)
            ledger(call["engine"]).append(
                "review_action", call["user"].name, {**result.payload, "action_id": result.action_id},
                claim_id=call["claim_id"], versions={"policy": label} if label else None,
                trace_id=claim_trace_hex(call["claim_id"]))
        return result

    return wrapper


# ---------------------------------------------------------------------------------------------
# working a case


@_audited
def claim_case(engine: Any, claim_id: str, user: User, policy: ReviewPolicy, threshold: float | None = None,
               now: datetime | None = None) -> ActionResult:
    """Lock an open case for `user` (for LOCK_TTL) so nobody else works it; Conflict if someone else holds it."""
    threshold = leaning_threshold(policy) if threshold is None else threshold
    _require(policy, user, "claim_case", "claim cases")
    return _claim(engine, claim_id, user, policy, threshold, now or utcnow())


def _claim(engine: Any, claim_id: str, user: User, policy: ReviewPolicy, threshold: float,
           now: datetime) -> ActionResult:
    with reviews.transaction(engine) as conn:
        case, state = reviews.open_case(conn, claim_id)
        stage = state.stage if state else "new"
        if stage in ("escalated", "awaiting_second") and not policy.is_allowed(user.role, "second_approve"):
            raise NotAllowed(f"claim {claim_id} " + ("was escalated" if stage == "escalated" else
                             "waits for a second approval") + ": only a senior reviewer may take it")
        live = state is not None and reviews.lock_live(state.claimed_by, state.claimed_at, now)
        if live and state.claimed_by != user.name:
            raise Conflict(f"claim {claim_id} is being worked by {state.claimed_by}")
        if live:  # already ours: keep the original start so review time is measured from it
            return ActionResult(0, "claim_case", WAITING, stage, f"you are already working claim {claim_id}",
                                {"action": "claim_case", "partition": case.partition})
        if not reviews.take_lock(conn, claim_id, state, user.name, now):
            raise Conflict(f"claim {claim_id} was claimed by someone else just now")
        leaning = model_leaning(case.p_fraud, threshold)
        aid = reviews.record_action(conn, case, user.name, user.role, "claim_case", "", WAITING, leaning, None, now)
    return ActionResult(aid, "claim_case", WAITING, stage, f"you are working claim {claim_id}",
                        {"action": "claim_case", "partition": case.partition})


@_audited
def release_case(engine: Any, claim_id: str, user: User, policy: ReviewPolicy, threshold: float | None = None,
                 now: datetime | None = None) -> ActionResult:
    """Give a claimed case back to the queue; Conflict if `user` does not hold it."""
    threshold = leaning_threshold(policy) if threshold is None else threshold
    _require(policy, user, "claim_case", "release cases")
    now = now or utcnow()
    with reviews.transaction(engine) as conn:
        case, state = reviews.open_case(conn, claim_id)
        if state is None or state.claimed_by != user.name or not reviews.lock_live(state.claimed_by,
                                                                                  state.claimed_at, now):
            raise Conflict(f"you are not working claim {claim_id}")
        reviews.set_stage(conn, claim_id, None, now)
        aid = reviews.record_action(conn, case, user.name, user.role, "release_case", "", WAITING,
                                    model_leaning(case.p_fraud, threshold), None, now)
    return ActionResult(aid, "release_case", WAITING, state.stage, f"claim {claim_id} is back in the queue",
                        {"action": "release_case", "partition": case.partition})


def _check_independent(engine: Any, policy: Any, claim_id: str, user: User, approvals: list[tuple[str, str]]
                       ) -> None:
    """Separation of duties (four_eyes policy `independent`); no-op for a policy without the rule."""
    check = getattr(policy, "independent_approver", None)
    if check is None:
        return
    others = sorted({u for u, _ in approvals})
    prov = accounts.provisioners(engine, [user.name, *others])
    verdict = check(user.name, prov.get(user.name, []), others, [p for o in others for p in prov.get(o, [])])
    if not verdict:
        raise NotAllowed(f"separation of duties ({verdict.rule}): you may not approve claim {claim_id} together "
                         f"with an account you provisioned or that provisioned yours")


@_audited
def record_review_decision(engine: Any, claim_id: str, user: User, decision: str, reason: str, policy: ReviewPolicy,
                           threshold: float | None = None, now: datetime | None = None) -> ActionResult:
    """Approve, reject or escalate a case `user` has claimed, with a reason.

    Approving records an approval; the case becomes `approved` when the policy's four-eyes rule is
    satisfied by the distinct approvers so far (the amount converted to the policy's currency with the
    versioned fx rates, whose version the ledger records), else it waits for a further approval from
    someone else (`awaiting_second`), who needs `second_approve`. Nobody approves a case twice, nor next to
    an account they provisioned. An escalated case can only be decided by a role allowed to `second_approve`.
    Rejecting closes it.
    """
    threshold = leaning_threshold(policy) if threshold is None else threshold
    if decision not in DECISIONS:
        raise InvalidInput(f"decision: must be one of {', '.join(DECISIONS)}")
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("reason: give a reason for the decision")
    if len(text) > REASON_MAX:
        raise InvalidInput(f"reason: at most {REASON_MAX} characters")
    text = policy.redact_text(text)  # reviewer notes never carry personal data into the stores or the ledger
    now = now or utcnow()
    fx: dict[str, Any] | None = None
    with reviews.transaction(engine) as conn:
        case, state = reviews.open_case(conn, claim_id)
        live = state is not None and reviews.lock_live(state.claimed_by, state.claimed_at, now)
        if state is None or state.claimed_by != user.name or not live:
            holder = state.claimed_by if live else None
            raise Conflict(f"claim {claim_id} is being worked by {holder}" if holder
                           else f"claim the case before deciding it (claim {claim_id} is not claimed by you)")
        stage = state.stage
        senior = policy.is_allowed(user.role, "second_approve")
        if stage == "escalated" and not senior:
            raise NotAllowed(f"claim {claim_id} was escalated: only a senior reviewer may decide it")
        approvals = reviews.approvals_of(conn, claim_id)
        amount = float(case.amount)
        if decision == "approve":
            if user.name in {u for u, _ in approvals}:
                raise Conflict(f"you already approved claim {claim_id}; a different senior reviewer must give "
                               f"the second approval")
            action = "second_approve" if approvals else "approve"
            _require(policy, user, action, "give the second approval" if approvals else "approve claims")
            _check_independent(engine, policy, claim_id, user, approvals)
            fx_rates = getattr(policy, "fx", None)
            fx = fx_rates.record(amount, case.currency) if fx_rates is not None else None
            done = policy.four_eyes_satisfied(amount, [*approvals, (user.name, user.role)],
                                              currency=case.currency if fx_rates is not None else None)
            status, new_stage = (APPROVED, "closed") if done else (WAITING, "awaiting_second")
            limit = getattr(policy, "four_eyes_amount", amount)
            message = (f"claim {claim_id} approved; it will be paid by the next payout run" if done else
                       f"approval recorded; claim {claim_id} needs a further approval from a different senior "
                       f"reviewer (four eyes above {getattr(policy, 'currency', case.currency)} {limit:,.2f})")
        elif decision == "reject":
            action = "reject"
            _require(policy, user, action, "reject claims")
            status, new_stage, message = REJECTED, "closed", f"claim {claim_id} rejected and closed"
        else:
            action = "escalate"
            _require(policy, user, action, "escalate claims")
            status, new_stage, message = WAITING, "escalated", f"claim {claim_id} escalated to a senior reviewer"
        if not reviews.set_open_status(conn, claim_id, status):
            raise Conflict(f"claim {claim_id} was closed by someone else just now")
        reviews.set_stage(conn, claim_id, new_stage, now)
        leaning = model_leaning(case.p_fraud, threshold)
        outcome = status if status != WAITING else new_stage
        aid = reviews.record_action(conn, case, user.name, user.role, action, text, outcome, leaning,
                                    state.claimed_at, now)
        if status == APPROVED:
            _payout_intent(conn, case, amount, [*approvals, (user.name, user.role)], policy)
    payload = {"action": action, "reason": text, "outcome": outcome, "partition": case.partition,
               "amount": amount, "currency": case.currency, "p_fraud": float(case.p_fraud),
               "model_leaning": leaning, "role": user.role}
    if fx is not None:
        payload["fx"] = fx
    return ActionResult(aid, action, status, new_stage, message, payload)


def _payout_intent(conn: Any, case: Any, amount: float, approvals: list, policy: Any) -> None:
    """The approval's payout intent, in the approval's own transaction (outbox): both or neither commit.

    Only when the payout policy allows it now (amount converted from the case's currency); a refused one is
    closed by the payout job instead.
    """
    from connectors.rails.outbox import Intent, add_intents

    from aios.kernel.settings import get_settings

    may_pay = getattr(policy, "may_pay", None)
    if may_pay is None:
        return
    verdict = (may_pay(amount, "human_review", approvals, currency=case.currency) if getattr(policy, "fx", None)
               else may_pay(amount, "human_review", approvals))
    if not verdict:
        return
    add_intents(conn, [Intent(case.claim_id, case.partition, amount, str(case.currency), reviews.REVIEW_PAYOUT_REASON,
                              get_settings().payout_rail)])


# ---------------------------------------------------------------------------------------------
# accounts: dual control for approving roles, sessions ended with the account


def provision_account(engine: Any, policy: Any, name: str, role: str, password: str, created_by: str,
                      *, bootstrap: bool = False) -> User:
    """Create an account provisioned by `created_by`. An account of a role that approves (the rbac policy's
    `needs_second_admin`) stays pending until a different administrator confirms it, unless `bootstrap`
    (the operator's CLI on the stores' host, who could write the table anyway). Audited."""
    pending = bool(policy.needs_second_admin(role)) and not bootstrap
    user = accounts.create_user(engine, name, role, password, policy.roles, created_by=created_by, pending=pending)
    record_user_change(engine, created_by, name, {"change": "created", "role": role, "pending": pending},
                       policy.label)
    return user


def confirm_account(engine: Any, policy: Any, name: str, confirmed_by: str) -> User:
    """The second administrator's confirmation of a pending account (never its creator). Audited."""
    user = accounts.confirm_user(engine, name, confirmed_by)
    record_user_change(engine, confirmed_by, name, {"change": "confirmed", "role": user.role}, policy.label)
    return user


def set_account_active(engine: Any, name: str, active: bool) -> None:
    """Enable or disable an account; disabling ends its sessions, enabling clears its sign-in lock."""
    accounts.set_active_flag(engine, name, active)
    if active:
        sessions.clear_failures(engine, f"user:{name}")
    else:
        sessions.end_user_sessions(engine, name)


def set_account_password(engine: Any, name: str, password: str) -> None:
    """Set a new password (hashed) and end the user's sessions."""
    accounts.set_password(engine, name, password)
    sessions.end_user_sessions(engine, name)


__all__ = ["ActionResult", "DECISIONS", "ReviewPolicy", "claim_case", "confirm_account", "leaning_threshold",
           "model_leaning", "provision_account", "record_review_decision", "release_case", "set_account_active",
           "set_account_password"]


