"""The modular fusion network: the classifier and every registered module as children of fraud, with the
hidden causes the modules share.

Structure (parents -> child):
    fraud -> ring                       (organised ring; only fraud has one)
    legit_delay                         (hospital stay, travel, catastrophe: a root cause of lateness)
    fraud, legit_delay -> late_report   (the intake rule: report delay above the rule's days)
    fraud, late_report -> classifier    (score band; conditioning on late keeps the delay from counting twice)
    legit_delay -> late_explanation     (speaks about the delay, not about fraud: explaining away)
    fraud, ring -> each evidence module (doc_forensics, watchlist, device_check, link_analysis, ...)

Every table is a Dirichlet: concentration = expert likelihood x expert_strength (config/modules.yaml) plus
label counts. Ring and legit_delay are never labelled, so label updates are expected counts (EM with the
expert concentration as prior). Silent states (unavailable, not_applicable, pending) are unobserved
evidence. Inference is exact enumeration over (fraud, ring, legit_delay); `to_pgmpy` exports the same
network so the platform's compiled inference can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.modules.contract import ModuleSpec

# (fraud, ring, legit) combinations that are possible; honest claims have no ring.
COMBOS = [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]
FRAUD_MODULE_COLUMN = {(0, 0): 0, (1, 0): 1, (1, 1): 2}  # (fraud, ring) -> column honest | lone | ring


@dataclass
class ModularNetwork:
    """Dirichlet concentrations of every table; probabilities are their normalised columns."""

    conc: dict[str, np.ndarray]
    states: dict[str, tuple[str, ...]]   # evidence node -> its evidence states (row order of its table)
    modules: tuple[str, ...]             # fraud-evidence modules (parents fraud, ring)

    def prob(self, node: str) -> np.ndarray:
        """The node's table: concentration columns normalised to sum to one."""
        c = self.conc[node]
        return c / c.sum(axis=0, keepdims=True)

    def copy(self) -> ModularNetwork:
        """An independent copy (tables are updated in place by nothing, but callers may)."""
        return ModularNetwork({k: v.copy() for k, v in self.conc.items()}, dict(self.states), self.modules)

    def encode(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Evidence codes per node: the row of its table, or -1 where the state is silent or the column absent."""
        out = {}
        for node, sts in self.states.items():
            if node not in frame.columns:
                out[node] = np.full(len(frame), -1)
                continue
            col = frame[node].to_numpy()
            code = np.full(len(frame), -1)
            for i, s in enumerate(sts):
                code[col == s] = i
            out[node] = code
        return out

    def fraud_given_late(self) -> np.ndarray:
        """P(fraud | late_report) implied by the network's own tables: a (2 late, 2 fraud) array."""
        pf, pl, late = self.prob("fraud")[:, 0], self.prob("legit_delay")[:, 0], self.prob("late_report")
        joint = np.array([[sum(pf[f] * pl[l] * late[lt, 2 * f + l] for l in (0, 1)) for f in (0, 1)] for lt in (0, 1)])
        return joint / joint.sum(axis=1, keepdims=True)

    def _log_terms(self, ev: dict[str, np.ndarray], score: np.ndarray | None = None) -> np.ndarray:
        """log P(combo, evidence) per row and combo in `COMBOS` order: an (n, 6) array.

        With `score` (the classifier's calibrated probability, which already saw the report delay), the
        classifier is soft evidence: P(score | fraud, late) is proportional to P(fraud | score) / P(fraud | late),
        exact for a calibrated score, so the score is used whole instead of its band.
        """
        n = len(next(iter(ev.values())))
        soft = None
        if score is not None:
            s = np.clip(np.asarray(score, dtype=float), 1e-6, 1 - 1e-6)
            fl = self.fraud_given_late()[np.maximum(ev["late_report"], 0)]
            soft = {0: np.log1p(-s) - np.log(fl[:, 0]), 1: np.log(s) - np.log(fl[:, 1])}
        pf, pr, pl = self.prob("fraud")[:, 0], self.prob("ring")[:, 0], self.prob("legit_delay")[:, 0]
        late, band, expl = self.prob("late_report"), self.prob("classifier"), self.prob("late_explanation")

        def lookup(table: np.ndarray, code: np.ndarray, col: int) -> np.ndarray:
            return np.where(code >= 0, np.log(table[np.maximum(code, 0), col]), 0.0)

        out = np.empty((n, len(COMBOS)))
        for j, (f, r, l) in enumerate(COMBOS):
            lp = np.log(pf[f]) + (np.log(pr[r]) if f else 0.0) + np.log(pl[l])
            lp = lp + lookup(late, ev["late_report"], 2 * f + l)
            lc = np.maximum(ev["late_report"], 0)  # late is always observed (intake); 0 if absent
            if soft is not None:
                lp = lp + soft[f]
            else:
                lp = lp + np.where(ev["classifier"] >= 0, np.log(band[np.maximum(ev["classifier"], 0), 2 * f + lc]), 0.0)
            lp = lp + lookup(expl, ev["late_explanation"], l)
            col = FRAUD_MODULE_COLUMN[(f, r)]
            for m in self.modules:
                lp = lp + lookup(self.prob(m), ev[m], col)
            out[:, j] = lp
        return out

    def posterior(self, frame: pd.DataFrame, score: np.ndarray | None = None) -> np.ndarray:
        """P(fraud | each row's evidence), exact; with `score`, the classifier enters as soft evidence
        (see `_log_terms`), else as its band."""
        lt = self._log_terms(self.encode(frame), score)
        lt -= lt.max(axis=1, keepdims=True)
        w = np.exp(lt)
        fraud = np.array([f for f, _, _ in COMBOS]) == 1
        return w[:, fraud].sum(axis=1) / w.sum(axis=1)

    def module_log_lr(self, name: str) -> np.ndarray:
        """Per evidence state of a fraud module: log P(state | fraud) - log P(state | honest), ring marginalised."""
        t = self.prob(name)
        rho = self.prob("ring")[1, 0]
        return np.log((1 - rho) * t[:, 1] + rho * t[:, 2]) - np.log(t[:, 0])

    def update(self, frame: pd.DataFrame, fraud: np.ndarray, weight: np.ndarray | None = None, iters: int = 20,
               nodes: tuple[str, ...] | None = None, score: np.ndarray | None = None) -> ModularNetwork:
        """A new network whose tables add the labelled rows' (expected) counts to this one's concentrations.

        `nodes` limits which tables learn (default: every module table, ring, legit_delay, late_report,
        late_explanation; not fraud or classifier, whose labels in an investigated sample are biased by who
        was investigated). EM: expected counts of the hidden ring and legit_delay, `iters` rounds.
        """
        nodes = nodes or (*self.modules, "ring", "legit_delay", "late_report", "late_explanation")
        y = np.asarray(fraud, dtype=bool)
        w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
        ev = self.encode(frame)
        prior = self.conc
        current = self
        f_of = np.array([f for f, _, _ in COMBOS])
        for _ in range(iters):
            lt = current._log_terms(ev, score)
            lt = np.where(f_of[None, :] == y[:, None].astype(int), lt, -np.inf)
            lt -= lt.max(axis=1, keepdims=True)
            q = np.exp(lt)
            q /= q.sum(axis=1, keepdims=True)
            q *= w[:, None]
            counts = {k: np.zeros_like(v) for k, v in prior.items()}
            for j, (f, r, l) in enumerate(COMBOS):
                qj = q[:, j]
                if f:
                    counts["ring"][r, 0] += qj.sum()
                counts["legit_delay"][l, 0] += qj.sum()
                _add(counts["late_report"], ev["late_report"], 2 * f + l, qj)
                _add(counts["late_explanation"], ev["late_explanation"], l, qj)
                for m in self.modules:
                    _add(counts[m], ev[m], FRAUD_MODULE_COLUMN[(f, r)], qj)
            new = {k: (prior[k] + counts[k]) if k in nodes else prior[k] for k in prior}
            current = ModularNetwork(new, self.states, self.modules)
        return current

    def to_pgmpy(self):
        """The same network as a pgmpy DiscreteBayesianNetwork (state names as in the contracts)."""
        from pgmpy.models import DiscreteBayesianNetwork
        from pgmpy.factors.discrete import TabularCPD

        yn = ["no", "yes"]
        names = {"fraud": yn, "ring": yn, "legit_delay": yn, "late_report": yn, **{k: list(v) for k, v in self.states.items()
                                                                                   if k != "late_report"}}
        edges = [("fraud", "ring"), ("fraud", "late_report"), ("legit_delay", "late_report"), ("fraud", "classifier"),
                 ("late_report", "classifier"), ("legit_delay", "late_explanation")]
        edges += [(p, m) for m in self.modules for p in ("fraud", "ring")]
        model = DiscreteBayesianNetwork(edges)
        rho = self.prob("ring")[:, 0]
        cpds = [
            TabularCPD("fraud", 2, self.prob("fraud"), state_names={"fraud": yn}),
            TabularCPD("legit_delay", 2, self.prob("legit_delay"), state_names={"legit_delay": yn}),
            TabularCPD("ring", 2, np.array([[1.0, rho[0]], [0.0, rho[1]]]), evidence=["fraud"], evidence_card=[2],
                       state_names={"ring": yn, "fraud": yn}),
            TabularCPD("late_report", 2, self.prob("late_report"), evidence=["fraud", "legit_delay"], evidence_card=[2, 2],
                       state_names={"late_report": yn, "fraud": yn, "legit_delay": yn}),
            TabularCPD("classifier", len(names["classifier"]), self.prob("classifier"), evidence=["fraud", "late_report"],
                       evidence_card=[2, 2], state_names={"classifier": names["classifier"], "fraud": yn, "late_report": yn}),
            TabularCPD("late_explanation", 2, self.prob("late_explanation"), evidence=["legit_delay"], evidence_card=[2],
                       state_names={"late_explanation": names["late_explanation"], "legit_delay": yn}),
        ]
        for m in self.modules:
            t = self.prob(m)
            cpds.append(TabularCPD(m, t.shape[0], np.stack([t[:, 0], t[:, 0], t[:, 1], t[:, 2]], axis=1),
                                   evidence=["fraud", "ring"], evidence_card=[2, 2],
                                   state_names={m: names[m], "fraud": yn, "ring": yn}))
        model.add_cpds(*cpds)
        model.check_model()
        return model


def _add(table: np.ndarray, code: np.ndarray, col: int, q: np.ndarray) -> None:
    seen = code >= 0
    np.add.at(table[:, col], code[seen], q[seen])


def expert_network(specs: dict[str, ModuleSpec], fusion: dict, fraud_rate: float, band_counts: np.ndarray,
                   late_states: tuple[str, str] = ("no", "yes")) -> ModularNetwork:
    """The network before any post-go-live label: expert tables x strength, the fraud rate and the
    classifier's band table from labelled history (`band_counts`: bands x [(f,late)=00,01,10,11])."""
    S = float(fusion["expert_strength"])
    lr = fusion["late_report"]
    late_yes = np.array([lr["honest"], lr["honest_delayed"], lr["fraud"], lr["fraud_delayed"]])
    rho, lam = float(fusion["ring_share_of_fraud"]), float(fusion["legit_delay_rate"])
    expl = specs["late_explanation"].explains
    conc = {
        "fraud": np.array([[1 - fraud_rate], [fraud_rate]]) * 1e6,  # history's rate, held fixed
        "ring": np.array([[1 - rho], [rho]]) * S,
        "legit_delay": np.array([[1 - lam], [lam]]) * S,
        "late_report": np.stack([1 - late_yes, late_yes]) * S,
        "classifier": np.asarray(band_counts, dtype=float) + 0.5,
        "late_explanation": np.array([[expl["not_delayed"], expl["delayed"]],
                                      [1 - expl["not_delayed"], 1 - expl["delayed"]]]) * S,
    }
    states = {"late_report": late_states, "classifier": specs["classifier"].evidence_states,
              "late_explanation": specs["late_explanation"].evidence_states}
    modules = []
    for name, spec in specs.items():
        table = spec.expert_table()
        if table is None:
            continue
        conc[name] = table * S
        states[name] = spec.evidence_states
        modules.append(name)
    return ModularNetwork(conc, states, tuple(modules))
