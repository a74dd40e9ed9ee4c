"""The alarm check one sensor tick makes: new drift verdicts and moved override rates become alarms.

It reads the drift gate evaluations recorded since the cursor and, only when reviews were recorded
since the cursor, the override counts of the partitions they touched. Each breach is recorded once
in the alarm store; the caller (`sensors.alarms`) turns the new ones into runs of `slo_job`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from connectors.stores.alarms import drift_gates_after, record_alarm, review_outcomes, reviewed_after
from models.slo import Alarm, SloConfig, drift_alarm, override_alarm, override_change, override_counts


@dataclass(frozen=True)
class AlarmCursor:
    """Where the last tick stopped: the last drift gate row and the last final review row it read."""

    gate_id: int = 0
    review_id: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> AlarmCursor:
        """The cursor from its JSON text (None or empty: from the start)."""
        cur = json.loads(raw) if raw else {}
        return cls(int(cur.get("gate_id", 0)), int(cur.get("review_id", 0)))

    def dump(self) -> str:
        """The cursor as JSON text."""
        return json.dumps({"gate_id": self.gate_id, "review_id": self.review_id})


@dataclass(frozen=True)
class AlarmTick:
    """What one tick found: every breach, those new to the alarm store, what it looked at, the next cursor."""

    raised: list[Alarm]
    new: list[Alarm]
    gates: int
    reviewed_partitions: list[str]
    cursor: AlarmCursor

    @property
    def repeated(self) -> int:
        """Breaches found again that were raised (and stored) before."""
        return len(self.raised) - len(self.new)


def check_alarms(engine: sa.Engine, cursor: AlarmCursor, slo: SloConfig) -> AlarmTick:
    """Alarms for the drift evaluations and reviews recorded since `cursor`; each new one recorded once."""
    raised: list[Alarm] = []
    gates = drift_gates_after(engine, cursor.gate_id)
    for row in gates.itertuples(index=False):
        alarm = drift_alarm(str(row.partition), bool(row.passed), str(row.detail), slo)
        if alarm:
            raised.append(alarm)
    gate_id = int(gates["id"].max()) if len(gates) else cursor.gate_id
    changed, review_id = reviewed_after(engine, cursor.review_id)
    if changed:
        counts = override_counts(review_outcomes(engine))
        for part in changed:
            alarm = override_alarm(override_change(counts, part, slo), slo)
            if alarm:
                raised.append(alarm)
    new = [a for a in raised if record_alarm(engine, a)]
    return AlarmTick(raised, new, len(gates), changed, AlarmCursor(gate_id, review_id))
