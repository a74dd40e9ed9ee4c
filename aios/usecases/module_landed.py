"""A decision module that answers after its claim was decided: decide the claim again with its signal.

An async module (`latency: async` in config/modules.yaml) has a deadline; a decision made before it answered
records it `pending` (or `unavailable` when its service was down) and goes on without it. When its inputs
land, `decide_when_module_lands` takes the claim's frozen feature row, adds the landed inputs (a new
snapshot, so replay reproduces the new decision too), decides the claim again with the pinned models,
replaces its decision row, opens a review case if it is now routed to people, and appends a
`module_landed` ledger row naming the module, its version, its state before and after, and p_fraud and
route before and after (after the decision's own score/posterior/decision rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from connectors.stores.audit import ledger
from connectors.stores.decisions import decisions_table
from connectors.stores.snapshots import load_snapshots
from models.decision import DecisionModels
from models.modules.contract import SILENT_STATES, ModuleContractError
from aios.usecases.decide_and_record import decide_claims, record_decisions

LANDED_ACTOR = "aios.module_landed@1"


@dataclass(frozen=True)
class Landed:
    """What a landed module changed for one claim."""

    claim_id: str
    module: str
    version: str
    state_before: str
    state_after: str
    p_fraud_before: float
    p_fraud_after: float
    route_before: str
    route_after: str


def decide_when_module_lands(engine: sa.Engine, models: DecisionModels, claim_id: str, module: str,
                             inputs: Mapping[str, Any], actor: str = LANDED_ACTOR) -> Landed:
    """Decide `claim_id` again now that `module`'s `inputs` (its declared input fields) landed (module doc).

    `models` should be the versions the stored decision pinned (`aios.usecases.replay.pinned_models`).
    LookupError: no stored decision. ModuleContractError: the module is not registered, or the inputs are not
    its declared fields (naming the field). ValueError: the decision already had the module's signal.
    """
    with engine.connect() as conn:
        row = conn.execute(sa.select(decisions_table).where(decisions_table.c.claim_id == claim_id)).mappings().first()
    if row is None:
        raise LookupError(f"no stored decision for claim {claim_id}")
    spec = models.modules.specs.get(module) if models.modules is not None else None
    if spec is None:
        raise ModuleContractError(f"module {module!r} is not registered in config/modules.yaml")
    missing = [f for f in spec.inputs if f not in inputs]
    extra = [f for f in inputs if f not in spec.inputs]
    if missing or extra:
        raise ModuleContractError(f"module {module!r}: input field {(missing or extra)[0]!r} is "
                                  f"{'missing' if missing else 'not declared'} (declared: {list(spec.inputs)})")
    before = json.loads(row["versions"]).get("modules", {}).get(module, {}).get("state")
    if before is not None and before not in SILENT_STATES:
        raise ValueError(f"claim {claim_id}: module {module!r} already said {before!r} when it was decided")
    features = load_snapshots(engine, [row["snapshot_hash"]]).assign(**dict(inputs))
    decisions = decide_claims(features, models, [row["currency"]])
    record_decisions(engine, row["partition"], decisions, models.policy, actor, replace_partition=False,
                     features=features, open_reviews=True)
    after = decisions.iloc[0]
    mods = json.loads(after["versions"])["modules"]
    landed = Landed(claim_id, module, mods[module]["version"], str(before), mods[module]["state"],
                    float(row["p_fraud"]), float(after["p_fraud"]), str(row["route"]), str(after["route"]))
    payload = {k: v for k, v in landed.__dict__.items() if k != "claim_id"} | {"partition": row["partition"]}
    ledger(engine).append("module_landed", actor, payload, claim_id=claim_id,
                          versions=json.loads(after["versions"]), snapshot_hash=after["snapshot_hash"])
    return landed
