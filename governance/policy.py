"""The policy set in force: versioned CEL policy files under governance/policies/.

`governance/policies/policyset.yaml` names the set (id + version, recorded with
every decision as `label`) and lists one file per kind:

| kind      | rules (inputs -> result)                                            | exposed as |
|-----------|---------------------------------------------------------------------|------------|
| routing   | route(p_fraud, amount) -> string                                    | `route`, `route_one` |
| four_eyes | required(amount) -> bool; satisfied(amount, approvals, senior_approvals) -> bool | `four_eyes_amount`, `needs_four_eyes`, `four_eyes_satisfied` |
| payout    | may_pay(amount, route, approvals, four_eyes_ok) -> bool             | `may_pay` |
| rbac      | is_allowed(role, action) -> bool                                    | `is_allowed`, `roles`, `actions` |
| pii       | may_see(role, field) -> bool; text_pii(text) -> list                | `pii_fields`, `redact`, `redact_text` |
| content   | flags(text) -> list                                                 | `content_flags` |

Loading reads every file into a new object and returns it only when all are
valid (a half-loaded set never runs); `reload_policy_set` keeps the previous set in
force when a new one is refused. Each file is read once: the bytes parsed are the bytes
hashed into the set's digest. `policy_set_in_force` shares one loaded set among the
callers of a process while the files are unchanged.

Vectorised routing. Per-claim CEL costs ~7 µs, 1M claims would take seconds, so
`route` evaluates CEL once per *cell* instead: the routing rules may only
compare `p_fraud` and `amount` with the policy's numeric constants and literals
(checked at load: no arithmetic or other functions). The sorted unique
thresholds T = t0 < ... < tk-1 split each axis into 2k+1 cells: the open
intervals (-inf, t0), (t0, t1), ..., (tk-1, inf) and the points {t0}, ..., {tk-1}.
Any such rule is constant on each (p-cell × amount-cell) rectangle, so CEL runs
on one representative per rectangle (at load; ~50 cells) and `route` maps every
claim to its cell with `np.searchsorted` and looks the route up. At load each
rectangle is also probed at both edges and inside (ulp next to each threshold,
quartiles, ±inf) and refused if CEL's answer varies, which catches e.g. a
comparison between p_fraud and amount. NaN in either input takes the routing
file's `MISSING_ROUTE` (CEL's comparisons on NaN are false or a type error).
`route_one` is the per-claim CEL reference; tests prove both agree.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from aios.kernel.contracts import ROUTES
from governance.fx import FxRates, load_fx_rates
from governance.cel_policy import (
    Policy,
    PolicyError,
    PolicyEvalError,
    TableFailure,
    _line,
    cel,
    load_policy_file,
    numeric_literals,
    read_bytes,
    read_yaml,
    run_table,
    same_value,
)

__all__ = [
    "POLICY_DIR", "ROUTES", "PolicyError", "PolicyEvalError", "PolicySet", "PolicyVerdict",
    "ReloadResult", "TableFailure", "load_policy_set", "policy_set_in_force", "reload_policy_set",
    "run_policy_tables",
]

POLICY_DIR = Path(__file__).resolve().parent / "policies"
MANIFEST = "policyset.yaml"

# kind -> rule -> (inputs, returns): the interface the policy set calls
KIND_RULES: dict[str, dict[str, tuple[dict[str, str], str]]] = {
    "routing": {"route": ({"p_fraud": "double", "amount": "double"}, "string")},
    "four_eyes": {"required": ({"amount": "double"}, "bool"),
                  "satisfied": ({"amount": "double", "approvals": "int", "senior_approvals": "int"}, "bool"),
                  "independent": ({"approver": "string", "approver_provisioners": "list", "approvers": "list",
                                   "approvers_provisioners": "list"}, "bool")},
    "payout": {"may_pay": ({"amount": "double", "route": "string", "approvals": "int", "four_eyes_ok": "bool"},
                           "bool")},
    "rbac": {"is_allowed": ({"role": "string", "action": "string"}, "bool"),
             "needs_second_admin": ({"role": "string"}, "bool")},
    "pii": {"may_see": ({"role": "string", "field": "string"}, "bool"),
            "text_pii": ({"text": "string"}, "list")},
    "content": {"flags": ({"text": "string"}, "list")},
}
# kind -> constants the set reads directly, with their Python type
KIND_CONSTANTS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "routing": {"MISSING_ROUTE": str},
    "four_eyes": {"FOUR_EYES_AMOUNT": (int, float), "CURRENCY": str},
    "payout": {},
    "rbac": {"ROLES": list, "ACTIONS": list, "SIGNIN_FREE_FAILURES": int, "SIGNIN_BACKOFF_SECONDS": (int, float),
             "SIGNIN_BACKOFF_MAX_SECONDS": (int, float), "SIGNIN_LOCKOUT_FAILURES": int, "SIGNIN_ADDRESS_FREE_FAILURES": int,
             "SIGNIN_ADDRESS_LOCKOUT_FAILURES": int, "SIGNIN_LOCKOUT_SECONDS": (int, float),
             "SIGNIN_RESET_SECONDS": (int, float)},
    "pii": {"PII_FIELDS": list, "TEXT_PATTERNS": dict, "FIELD_MASK": str, "TEXT_MASK": str},
    "content": {"FLAG_PATTERNS": dict},
}
_ROUTING_FUNCTIONS = {"_<_", "_<=_", "_>_", "_>=_", "_==_", "_!=_", "_&&_", "_||_", "!_", "_?_:_"}


@dataclass(frozen=True)
class PolicyVerdict:
    """An allow/deny answer with the rule (and case) that decided it; truthy when allowed."""

    allowed: bool
    rule: str

    def __bool__(self) -> bool:
        return self.allowed


# ---------------------------------------------------------------------------------------------
# vectorised routing


def _cell_probes(thresholds: np.ndarray) -> list[list[float]]:
    """For 2k+1 cells of the axis split at `thresholds`, the probe values inside each cell."""
    t = [float(x) for x in thresholds]
    inf = float("inf")
    if not t:
        return [[-inf, -1.0, 0.0, 1.0, inf]]

    def interior(lo: float, hi: float) -> list[float]:
        if lo == -inf:
            cands = [-inf, -1e300, hi - max(1.0, abs(hi)) * 1e6, hi - 1.0, float(np.nextafter(hi, -inf))]
        elif hi == inf:
            cands = [float(np.nextafter(lo, inf)), lo + 1.0, lo + max(1.0, abs(lo)) * 1e6, 1e300, inf]
        else:
            cands = [float(np.nextafter(lo, inf)), lo + (hi - lo) * 0.25, lo + (hi - lo) * 0.5,
                     lo + (hi - lo) * 0.75, float(np.nextafter(hi, -inf))]
        return sorted({c for c in cands if lo < c < hi or (c == lo == -inf) or (c == hi == inf)})

    cells = [interior(-inf, t[0])]
    for i, ti in enumerate(t):
        cells.append([ti])
        cells.append(interior(ti, t[i + 1] if i + 1 < len(t) else inf))
    return cells


def _cell_index(x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cell of each value: 2i for the open interval below thresholds[i], 2i+1 for the point itself."""
    k = len(thresholds)
    if k == 0:
        return np.zeros(x.shape, dtype=np.int64)
    i = np.searchsorted(thresholds, x, side="left")
    eq = thresholds[np.minimum(i, k - 1)] == x
    eq &= i < k
    return 2 * i + eq


@dataclass(frozen=True)
class _RoutingTable:
    thresholds: np.ndarray  # sorted unique finite floats, shared by both axes
    table: np.ndarray  # (2k+1, 2k+1) object array of routes: [p-cell, amount-cell]
    missing_route: str

    def route(self, p: np.ndarray, a: np.ndarray) -> np.ndarray:
        ip = _cell_index(p, self.thresholds)
        ia = _cell_index(a, self.thresholds)
        ip[np.isnan(p)] = 0
        ia[np.isnan(a)] = 0
        out = self.table[ip, ia]
        missing = np.isnan(p) | np.isnan(a)
        if missing.any():
            out[missing] = self.missing_route
        return out


def _build_routing_table(policy: Policy) -> _RoutingTable:
    rule = policy.rules["route"]
    where = f"{policy.path}:{rule.line}: {policy.label} rule 'route'"
    for label, src, line in rule.sources:
        bad = set(cel.compile(src).functions()) - _ROUTING_FUNCTIONS
        if bad:
            raise PolicyError(f"{policy.path}:{line}: {policy.label} rule '{label}': routing rules may only compare "
                              f"p_fraud and amount with constants (and/or/not/?:); found {sorted(bad)}")
    values: set[float] = set()
    for v in policy.constants.values():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            values.add(float(v))
    for _label, src, _line_no in rule.sources:
        values |= numeric_literals(src)
    thresholds = np.array(sorted(v for v in values if np.isfinite(v)), dtype=float)
    probes = _cell_probes(thresholds)
    n = len(probes)
    table = np.empty((n, n), dtype=object)
    for i, ps in enumerate(probes):
        for j, amounts in enumerate(probes):
            seen: dict[str, tuple[float, float]] = {}
            for p in ps:
                for a in amounts:
                    r = policy.evaluate("route", p_fraud=p, amount=a)
                    seen.setdefault(r, (p, a))
            if len(seen) > 1:
                raise PolicyError(f"{where}: the route is not constant between thresholds "
                                  f"({dict(seen)}); compare p_fraud and amount only with constants")
            if seen:
                table[i, j] = next(iter(seen))
            else:  # an empty cell (two adjacent floats): no input can land here
                table[i, j] = policy.constants["MISSING_ROUTE"]
    for r in set(table.ravel()):
        if r not in ROUTES:
            raise PolicyError(f"{where}: route {r!r} is not one of {ROUTES}")
    return _RoutingTable(thresholds=thresholds, table=table, missing_route=policy.constants["MISSING_ROUTE"])


# ---------------------------------------------------------------------------------------------
# the set


def _approval_counts(approvals: Any, senior_approvals: int | None,
                     is_allowed: Callable[[str, str], bool]) -> tuple[int, int]:
    """(distinct approvers, distinct senior approvers) from a count or from (user, role) pairs / dicts.

    Only roles allowed to `approve` count as approvers and only roles allowed to
    `second_approve` as senior; the same user approving twice counts once.
    """
    if isinstance(approvals, (int, np.integer)) and not isinstance(approvals, bool):
        return int(approvals), int(senior_approvals or 0)
    users: set[str] = set()
    seniors: set[str] = set()
    for item in approvals or ():
        if isinstance(item, Mapping):
            user, role = item.get("user"), item.get("role")
        else:
            user, role = item
        if not isinstance(user, str) or not isinstance(role, str):
            raise TypeError(f"an approval is (user, role); got {item!r}")
        if is_allowed(role, "approve") or is_allowed(role, "second_approve"):
            users.add(user)
        if is_allowed(role, "second_approve"):
            seniors.add(user)
    return len(users), len(seniors)


class PolicySet:
    """All policies in force, under one id and version that every decision records."""

    def __init__(self, *, policy_id: str, version: str, path: Path, policies: Mapping[str, Policy],
                 digest: str, fx: FxRates | None = None) -> None:
        self.policy_id = policy_id
        self._fx = fx
        self.version = version
        self.path = path
        self.policies = dict(policies)
        self.digest = digest
        self._routing = _build_routing_table(self.policies["routing"])
        self._cache: dict[tuple[str, str, str], bool] = {}
        self._lock = threading.Lock()
        pii = self.policies["pii"].constants
        self._text_patterns = {k: re.compile(v) for k, v in pii["TEXT_PATTERNS"].items()}

    # identity --------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """`policy_id@version` of the set."""
        return f"{self.policy_id}@{self.version}"

    @property
    def versions(self) -> dict[str, str]:
        """`{"policy_set": label, kind: "policy_id@version", ...}` for the decision's `versions`."""
        return {"policy_set": self.label, **{k: p.label for k, p in sorted(self.policies.items())}}

    def __repr__(self) -> str:
        return f"PolicySet({self.label}, digest={self.digest[:12]})"

    def _cached(self, kind: str, rule: str, a: str, b: str) -> bool:
        key = (f"{kind}.{rule}", a, b)
        hit = self._cache.get(key)
        if hit is None:
            names = list(KIND_RULES[kind][rule][0])
            hit = bool(self.policies[kind].evaluate(rule, **{names[0]: a, names[1]: b}))
            with self._lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[key] = hit
        return hit

    # routing ---------------------------------------------------------------------------------
    def route(self, p_fraud: Any, amount: Any) -> np.ndarray:
        """Route per claim (object array of route strings), vectorised by band cell; see module doc."""
        p = np.asarray(p_fraud, dtype=float)
        a = np.asarray(amount, dtype=float)
        p, a = np.broadcast_arrays(p, a)
        return self._routing.route(p.ravel(), a.ravel()).reshape(p.shape)

    def route_one(self, p_fraud: float, amount: float) -> str:
        """Route of one claim by evaluating the CEL rule directly (the reference for `route`)."""
        p, a = float(p_fraud), float(amount)
        if np.isnan(p) or np.isnan(a):
            return self._routing.missing_route
        return self.policies["routing"].evaluate("route", p_fraud=p, amount=a)

    def explain_route(self, p_fraud: float, amount: float) -> str:
        """The routing case that decided one claim, as `policy@version:route.case` (or `...:route.default`)."""
        p, a = float(p_fraud), float(amount)
        pol = self.policies["routing"]
        if np.isnan(p) or np.isnan(a):
            return f"{pol.label}:route.MISSING_ROUTE"
        _value, case = pol.explain("route", p_fraud=p, amount=a)
        return f"{pol.label}:route.{case or 'default'}"

    # four eyes and payouts ---------------------------------------------------------------------
    @property
    def four_eyes_amount(self) -> float:
        """The amount above which a payout needs four eyes (FOUR_EYES_AMOUNT)."""
        return float(self.policies["four_eyes"].constants["FOUR_EYES_AMOUNT"])

    @property
    def fx(self) -> FxRates:
        """The exchange rates the limits are compared with (config/fx_rates.yaml, read on first use)."""
        if self._fx is None:
            fx = load_fx_rates()
            if fx.base != self.currency:
                raise PolicyError(f"{self.policies['four_eyes'].path}: CURRENCY {self.currency!r} is not the base of "
                                  f"the fx rates {fx.version} ({fx.base!r})")
            self._fx = fx
        return self._fx

    @property
    def currency(self) -> str:
        """The currency the policies' limits are in (four eyes, payouts)."""
        return str(self.policies["four_eyes"].constants["CURRENCY"])

    def in_policy_currency(self, amount: float, currency: str | None = None) -> float:
        """`amount` of `currency` converted with the set's fx rates (no currency: already in the policy's)."""
        return float(amount) if currency is None else self.fx.to_base(amount, currency)

    def needs_four_eyes(self, amount: float, currency: str | None = None) -> bool:
        """Whether a claim of this amount (of `currency`, converted) needs four eyes (a second approval)."""
        return bool(self.policies["four_eyes"].evaluate("required", amount=self.in_policy_currency(amount, currency)))

    def four_eyes_satisfied(self, amount: float, approvals: Any, senior_approvals: int | None = None,
                            currency: str | None = None) -> bool:
        """Whether the approvals meet the four-eyes rule; `approvals` is a count or (user, role) pairs;
        `amount` is converted from `currency` to the policy's currency first."""
        n, seniors = _approval_counts(approvals, senior_approvals, self.is_allowed)
        return bool(self.policies["four_eyes"].evaluate("satisfied", amount=self.in_policy_currency(amount, currency),
                                                        approvals=n, senior_approvals=seniors))

    def independent_approver(self, approver: str, approver_provisioners: Iterable[str],
                             approvers: Iterable[str], approvers_provisioners: Iterable[str]) -> PolicyVerdict:
        """Separation of duties: may `approver` (provisioned by `approver_provisioners`) approve a claim already
        approved by `approvers` (provisioned by `approvers_provisioners`)? Refused when one provisioned another."""
        ok = bool(self.policies["four_eyes"].evaluate(
            "independent", approver=str(approver), approver_provisioners=sorted(set(approver_provisioners)),
            approvers=sorted(set(approvers)), approvers_provisioners=sorted(set(approvers_provisioners))))
        return PolicyVerdict(allowed=ok, rule=f"{self.policies['four_eyes'].label}:independent")

    def needs_second_admin(self, role: str) -> bool:
        """Whether an account of `role` must be confirmed by a second administrator (dual control)."""
        return bool(self.policies["rbac"].evaluate("needs_second_admin", role=str(role)))

    @property
    def signin_limits(self) -> dict[str, float]:
        """The sign-in throttle's numbers (SIGNIN_* constants of the rbac policy, without the prefix, lower case)."""
        c = self.policies["rbac"].constants
        return {k[len("SIGNIN_"):].lower(): float(v) for k, v in c.items() if k.startswith("SIGNIN_")}

    def may_pay(self, amount: float, route: str, approvals: Any = 0,
                senior_approvals: int | None = None, currency: str | None = None) -> PolicyVerdict:
        """May this claim be paid: payout limits, route and the four-eyes rule (truthy verdict); `amount` is
        converted from `currency` to the policy's currency first."""
        n, seniors = _approval_counts(approvals, senior_approvals, self.is_allowed)
        amount = self.in_policy_currency(amount, currency)
        ok = self.four_eyes_satisfied(amount, n, seniors)
        pol = self.policies["payout"]
        value, case = pol.explain("may_pay", amount=float(amount), route=str(route), approvals=n,
                                  four_eyes_ok=ok)
        return PolicyVerdict(allowed=bool(value), rule=f"{pol.label}:may_pay.{case or 'default'}")

    # who may do what ---------------------------------------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the rbac policy knows."""
        return tuple(self.policies["rbac"].constants["ROLES"])

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions the rbac policy knows."""
        return tuple(self.policies["rbac"].constants["ACTIONS"])

    def is_allowed(self, role: str, action: str) -> bool:
        """Whether `role` may do `action` (rbac policy)."""
        return self._cached("rbac", "is_allowed", str(role), str(action))

    # PII -----------------------------------------------------------------------------------------
    @property
    def pii_fields(self) -> frozenset[str]:
        """The fields the pii policy treats as personal data."""
        return frozenset(self.policies["pii"].constants["PII_FIELDS"])

    def may_see(self, role: str, field: str) -> bool:
        """Whether `role` may see `field` unmasked (pii policy)."""
        return self._cached("pii", "may_see", str(role), str(field))

    def sees_all_pii(self, role: str) -> bool:
        """Whether `role` may see every PII field unmasked."""
        return all(self.may_see(role, f) for f in self.pii_fields)

    def redact(self, record: Mapping[str, Any], role: str, names: Iterable[str] = ()) -> dict[str, Any]:
        """A copy of `record` (nested dicts/lists too) with every field `role` may not see masked;
        for roles that may not see all PII, free-text strings are also passed through `redact_text`."""
        mask = self.policies["pii"].constants["FIELD_MASK"]
        scrub = not self.sees_all_pii(role)
        names = tuple(names)

        def walk(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {k: (mask if v is not None and not self.may_see(role, str(k)) else walk(v))
                        for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [walk(v) for v in value]
            if scrub and isinstance(value, str):
                return self.redact_text(value, names)
            return value

        return walk(record)

    def pii_kinds(self, text: str) -> list[str]:
        """The kinds of PII (email, iban, phone, name, ...) the pii policy finds in `text`, sorted."""
        return sorted(self.policies["pii"].evaluate("text_pii", text=str(text)))

    def redact_text(self, text: str, names: Iterable[str] = ()) -> str:
        """`text` (e.g. a log line) with emails, IBANs, phone numbers, names and the given `names` masked."""
        tmpl = self.policies["pii"].constants["TEXT_MASK"]
        out = str(text)
        for n in sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True):
            out = re.sub(re.escape(n), tmpl.format(kind="name"), out, flags=re.IGNORECASE)
        for kind in self.pii_kinds(out):
            pat = self._text_patterns[kind]
            repl = tmpl.format(kind=kind)
            if "v" in pat.groupindex:
                out = pat.sub(lambda m, r=repl: m.group(0)[: m.start("v") - m.start()] + r
                              + m.group(0)[m.end("v") - m.start():], out)
            else:
                out = pat.sub(repl, out)
        return out

    # content -------------------------------------------------------------------------------------
    def content_flags(self, text: str) -> list[str]:
        """Sorted flags for free text: the content policy's flags plus `pii:<kind>` markers."""
        flags = set(self.policies["content"].evaluate("flags", text=str(text)))
        flags |= {f"pii:{k}" for k in self.pii_kinds(text)}
        return sorted(flags)


# ---------------------------------------------------------------------------------------------
# loading


def _check_kind(policy: Policy, kind: str) -> None:
    """The file offers exactly the rules (with inputs and result types) and constants its kind needs."""
    where = f"{policy.path}"
    if policy.kind != kind:
        raise PolicyError(f"{where}:1: {policy.label}: kind {policy.kind!r}, but the manifest lists it as {kind!r}")
    want = KIND_RULES[kind]
    for name, rule in policy.rules.items():
        if name not in want:
            raise PolicyError(f"{where}:{rule.line}: {policy.label} rule '{name}': not a rule of kind {kind!r} "
                              f"(expected {sorted(want)})")
        inputs, returns = want[name]
        if dict(rule.inputs) != inputs or rule.returns != returns:
            raise PolicyError(f"{where}:{rule.line}: {policy.label} rule '{name}': must take {inputs} and "
                              f"return {returns}; declares {dict(rule.inputs)} -> {rule.returns}")
    missing = set(want) - set(policy.rules)
    if missing:
        raise PolicyError(f"{where}:1: {policy.label}: missing rule(s) {sorted(missing)} of kind {kind!r}")
    for name, typ in KIND_CONSTANTS[kind].items():
        value = policy.constants.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise PolicyError(f"{where}:{policy.constant_lines.get(name, 1)}: {policy.label} constant {name}: "
                              f"required, of type {typ}")
    c = policy.constants
    if kind == "routing" and c["MISSING_ROUTE"] not in ROUTES:
        raise PolicyError(f"{where}:{policy.constant_lines['MISSING_ROUTE']}: {policy.label} constant "
                          f"MISSING_ROUTE: {c['MISSING_ROUTE']!r} is not one of {ROUTES}")
    if kind == "rbac" and isinstance(c.get("GRANTS"), dict):
        roles, actions = set(c["ROLES"]), set(c["ACTIONS"])
        for role, granted in c["GRANTS"].items():
            bad = ([role] if role not in roles else []) + [a for a in granted or [] if a not in actions]
            if bad:
                raise PolicyError(f"{where}:{policy.constant_lines.get('GRANTS', 1)}: {policy.label} constant GRANTS: "
                                  f"unknown role/action {bad} (ROLES {sorted(roles)}, ACTIONS {sorted(actions)})")
    for pats in ("TEXT_PATTERNS", "FLAG_PATTERNS"):
        for name, pat in (c.get(pats) or {}).items() if kind in ("pii", "content") else ():
            try:
                re.compile(pat)
            except (re.error, TypeError) as exc:
                raise PolicyError(f"{where}:{policy.constant_lines.get(pats, 1)}: {policy.label} constant "
                                  f"{pats}[{name}]: bad regular expression: {exc}") from exc
    if kind == "pii":
        for tmpl in ("TEXT_MASK",):
            try:
                c[tmpl].format(kind="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise PolicyError(f"{where}:{policy.constant_lines[tmpl]}: {policy.label} constant {tmpl}: "
                                  f"must be a template with only {{kind}}: {exc}") from exc


def _manifest_path(path: Path | None) -> Path:
    path = Path(path) if path is not None else POLICY_DIR
    return path / MANIFEST if path.is_dir() else path


def load_policy_set(path: Path | None = None) -> PolicySet:
    """Load and check the policy set (a directory holding policyset.yaml, or that manifest file).

    Every file is parsed and checked into a new object; the set is returned only
    when all are valid, else PolicyError names the file, the line and the rule.
    Nothing of the `tests:` tables runs here (see `run_policy_tables`).
    """
    manifest = _manifest_path(path)
    manifest_bytes = read_bytes(manifest)
    raw = read_yaml(manifest, manifest_bytes)
    if not isinstance(raw, Mapping) or not {"policy_set", "version", "files"} <= set(raw):
        raise PolicyError(f"{manifest}:1: a policy set manifest needs policy_set, version and files")
    extra = set(raw) - {"policy_set", "version", "files", "description"}
    if extra:
        k = sorted(extra, key=str)[0]
        raise PolicyError(f"{manifest}:{_line(raw, k)}: unknown key {k!r}")
    for key in ("policy_set", "version"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise PolicyError(f"{manifest}:{_line(raw, key)}: `{key}` must be a non-empty (quoted) string")
    files = raw["files"]
    if not isinstance(files, Mapping) or set(files) != set(KIND_RULES):
        got = sorted(files) if isinstance(files, Mapping) else files
        raise PolicyError(f"{manifest}:{_line(raw, 'files')}: `files` must map exactly the kinds "
                          f"{sorted(KIND_RULES)} to files; got {got}")
    base = manifest.parent
    listed = {(base / str(f)).resolve() for f in files.values()}
    stray = sorted(p.name for p in base.glob("*.yaml") if p.resolve() not in listed and p.name != manifest.name)
    if stray:
        raise PolicyError(f"{manifest}:{_line(raw, 'files')}: policy file(s) {stray} in {base} are not listed in "
                          f"the manifest; list or remove them so nobody believes they are in force")
    policies: dict[str, Policy] = {}
    ids: dict[str, str] = {}
    for kind in sorted(files):
        policy = load_policy_file(base / str(files[kind]))
        _check_kind(policy, kind)
        if policy.policy_id in ids:
            raise PolicyError(f"{policy.path}:1: policy_id {policy.policy_id!r} also used by {ids[policy.policy_id]}")
        ids[policy.policy_id] = str(policy.path)
        policies[kind] = policy
    h = hashlib.sha256(manifest_bytes)
    for kind in sorted(policies):
        h.update(kind.encode() + b"\0" + policies[kind].digest.encode())
    return PolicySet(policy_id=raw["policy_set"], version=raw["version"], path=manifest, policies=policies,
                     digest=h.hexdigest())


@lru_cache(maxsize=8)
def _loaded(manifest: str, _stamps: tuple[tuple[str, int, int], ...]) -> PolicySet:
    return load_policy_set(Path(manifest))


def policy_set_in_force(path: Path | None = None) -> PolicySet:
    """The policy set at `path` (default: governance/policies/), loaded once per process: callers get the
    same object until a YAML file of its folder changes (size or modification time), then a new load."""
    manifest = _manifest_path(path)
    try:
        stamps = tuple((str(p), st.st_mtime_ns, st.st_size) for p in sorted(manifest.parent.rglob("*.yaml"))
                       for st in (p.stat(),))
    except OSError as exc:
        raise PolicyError(f"{manifest}: cannot read: {exc}") from exc
    return _loaded(str(manifest), stamps)


def run_policy_tables(policy_set: PolicySet) -> list[TableFailure]:
    """Run every file's `tests:` table (and the routing rows through vectorised `route` too)."""
    failures: list[TableFailure] = []
    for kind in sorted(policy_set.policies):
        failures += run_table(policy_set.policies[kind])
    routing = policy_set.policies["routing"]
    rows = [r for r in routing.tests if r.rule == "route"]
    if rows:
        got = policy_set.route([r.inputs["p_fraud"] for r in rows], [r.inputs["amount"] for r in rows])
        for row, g in zip(rows, got, strict=True):
            if not same_value(g, row.expect):
                failures.append(TableFailure(path=str(routing.path), line=row.line, policy=routing.label,
                                             rule="route (vectorised)", name=row.name, inputs=row.inputs,
                                             expect=row.expect, got=g))
    return failures


# ---------------------------------------------------------------------------------------------
# reload


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of a reload: truthy when the new set loaded; `policy_set` is the one in force."""

    ok: bool
    policy_set: PolicySet  # the set in force after the attempt
    error: PolicyError | None = None

    def __bool__(self) -> bool:
        return self.ok


def _load_checked(path: Path | None, run_tables: bool) -> PolicySet:
    new = load_policy_set(path)
    if run_tables:
        failures = run_policy_tables(new)
        if failures:
            raise PolicyError(f"{new.path}: {len(failures)} policy table row(s) fail; first: {failures[0]}")
    return new


def reload_policy_set(current: PolicySet, path: Path | None = None, *,
                      run_tables: bool = True) -> ReloadResult:
    """Try to load a new set; a refused one (load error or failing table) leaves `current` in force."""
    try:
        return ReloadResult(ok=True, policy_set=_load_checked(path or current.path, run_tables))
    except PolicyError as exc:
        return ReloadResult(ok=False, policy_set=current, error=exc)
