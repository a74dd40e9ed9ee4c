"""Exact, batched inference for discrete Bayesian networks.

``CompiledNetwork`` answers posterior / evidence-likelihood queries for many
evidence rows at once, exactly (same numbers as pgmpy's
``VariableElimination`` up to floating point rounding), without importing
Dagster.  pgmpy is only needed by :meth:`CompiledNetwork.from_pgmpy`.

Design
------
* Evidence is encoded into an integer matrix (rows x variables, ``-1`` =
  unobserved).  Rows are grouped by their *pattern* (the set of observed
  variables); all work below is done once per pattern and vectorised over
  the rows of that pattern.
* For a pattern the network is pruned to the ancestral set of the observed
  variables and the target (barren nodes removed).  The remaining CPDs are
  split into independent *groups*: CPDs connected through unobserved
  variables (the target counts as unobserved).  Given the evidence, the
  groups factorise P(target, evidence), so only the target's group decides
  the posterior; every other group is a factor over observed variables only
  (needed for ``log_evidence`` and to detect impossible evidence).
* Each group is evaluated in one of two modes, picked by a cost model:

  - *table mode*: eliminate the group's hidden variables (greedy min-weight
    order) keeping the observed variables as free axes, giving a table over
    (observed vars of the group, target).  The table is cached and every row
    is answered by a single fancy-indexing lookup.
  - *row mode*: used when that table would be too large (more than
    ``max_table_cells`` cells) or too expensive for the number of rows.  The
    CPDs are reduced by each row's evidence, keeping a leading row axis, and
    the hidden variables are eliminated with ``np.einsum`` over all rows at
    once (in bounded chunks).  Every intermediate factor is rescaled per row
    and the log scale accumulated, so many small probabilities do not
    underflow.

  Table-mode rows whose looked-up value is exactly 0 are recomputed in row
  mode, so underflow there is also harmless.
* Compiled patterns and groups (with their tables) are cached in bounded LRU
  caches (count and total table cells).
* Rows whose pattern occurs once in the batch (with 80% of variables
  unobserved, nearly every row) skip per-pattern compilation: they all go
  through one compiled *program* (``models/batched_elimination.py``), the
  collect pass of a junction tree towards the target with evidence as
  likelihood vectors on a batch axis, compiled once per (target, variables
  observed in the batch) and cached like a pattern.  Its per-row cost depends
  on clique sizes, not on patterns.  Rows it flags (a message below 1e-200:
  impossible evidence or possible underflow) are recomputed in
  evidence-indicator mode with pairwise rescaling.  Dirichlet draws
  (``posterior_interval``) keep the per-pattern / indicator paths.

Behaviour
---------
* A missing column, ``None``, ``NaN`` or ``pd.NA`` means unobserved.
* Unknown column names and unknown states raise ``ValueError`` naming them.
* Evidence on the target itself is allowed: the posterior is one-hot on the
  observed state.
* Impossible evidence (probability zero) does **not** raise: ``posterior``
  returns a row of ``NaN`` and ``log_evidence`` returns ``-inf`` for that row
  (``posterior_interval`` returns ``NaN`` bounds, ``value_of_information``
  ``NaN``).  Use ``np.isnan(post).any(axis=1)`` to find such rows.
* Instances are not thread-safe (the caches are mutated on every call).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.batched_elimination import SEARCH_WORK, ElimProgram, compile_program

__all__ = ["CompiledNetwork"]

_SAMPLE = -1  # label of the Dirichlet-sample axis in factors
_ROW = -2  # label of the evidence-row axis in factors
_PROGRAM_CHUNK_CELLS = 1 << 22  # rows per program chunk = this / largest intermediate per row


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _prod(it) -> int:
    p = 1
    for x in it:
        p *= int(x)
    return p


def _einsum(ops: Sequence[tuple[tuple, np.ndarray]], out_labels: Sequence) -> np.ndarray:
    """Contract factors given as (labels, array) pairs to ``out_labels``."""
    mapping: dict = {}
    args: list = []
    sizes: dict = {}
    for labels, arr in ops:
        sub = []
        for lab, d in zip(labels, arr.shape):
            sub.append(mapping.setdefault(lab, len(mapping)))
            sizes[lab] = d
        args.append(arr)
        args.append(sub)
    args.append([mapping[lab] for lab in out_labels])
    if len(ops) > 2 and _prod(sizes.values()) > 4096:
        return np.einsum(*args, optimize="greedy")
    return np.einsum(*args, optimize=False)


def _batch_ndim(labels: tuple) -> int:
    k = 0
    for lab in labels:
        if lab == _SAMPLE or lab == _ROW:
            k += 1
        else:
            break
    return k


def _merged_labels(labels_list: Sequence[tuple], drop=None) -> tuple:
    has_s = any(_SAMPLE in lab for lab in labels_list)
    has_r = any(_ROW in lab for lab in labels_list)
    out: list = []
    if has_s:
        out.append(_SAMPLE)
    if has_r:
        out.append(_ROW)
    seen = set(out)
    for labels in labels_list:
        for lab in labels:
            if lab not in seen and lab != drop:
                seen.add(lab)
                out.append(lab)
    return tuple(out)


def _rescale(labels: tuple, arr: np.ndarray, logscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide a row-carrying factor by its per-(sample, row) maximum."""
    if _ROW not in labels:
        return arr, logscale
    nb = _batch_ndim(labels)
    if arr.ndim > nb:
        m = arr.max(axis=tuple(range(nb, arr.ndim)), keepdims=True)
    else:
        m = arr.copy()
    m = np.where(m > 0, m, 1.0)
    arr = arr / m
    lm = np.log(m.reshape(m.shape[:nb]))
    if _SAMPLE not in labels:
        # broadcast (rows,) against logscale of shape (S, rows) or (1, rows)
        lm = lm[None, :]
    return arr, logscale + lm


def _greedy_order(scopes: Sequence[Sequence[int]], elim: Sequence[int], card) -> tuple[list, int, int]:
    """Greedy min-weight elimination order.

    Returns (order, total cost in cells, largest intermediate factor in cells).
    Variables in ``scopes`` that are not in ``elim`` stay (count in weights).
    """
    adj: dict[int, set] = {}
    for sc in scopes:
        for v in sc:
            s = adj.setdefault(v, set())
            s.update(sc)
    for v, s in adj.items():
        s.discard(v)
    remaining = set(elim)

    def w_of(v: int) -> int:
        w = card[v]
        for u in adj[v]:
            w *= card[u]
        return w

    weight = {v: w_of(v) for v in remaining}
    heap = [(w, v) for v, w in weight.items()]
    heapq.heapify(heap)
    order: list = []
    cost = 0
    biggest = 0
    while heap:
        w, v = heapq.heappop(heap)
        if v not in remaining or weight[v] != w:
            continue  # stale entry
        cost += w
        if w > biggest:
            biggest = w
        order.append(v)
        remaining.discard(v)
        nb = adj.pop(v)
        for u in nb:
            au = adj[u]
            au.discard(v)
            au.update(nb)
            au.discard(u)
        for u in nb:
            if u in remaining:
                nw = w_of(u)
                if nw != weight[u]:
                    weight[u] = nw
                    heapq.heappush(heap, (nw, u))
    return order, cost, biggest


@dataclass
class _Group:
    """A set of CPDs connected through unobserved variables."""

    factors: tuple  # CPD ids (= variable index of the CPD's child)
    kept_obs: tuple  # observed variables appearing in the group (sorted)
    target: int | None  # target variable if it is in this group
    table_order: list
    table_cost: int
    table_max: int
    dims: tuple  # cardinalities of kept_obs
    row_order: list | None = None  # row-mode plan, computed on first need
    row_cost: int = 0
    row_max: int = 0
    table: np.ndarray | None = field(default=None, repr=False)  # (prod(dims), [k])

    @property
    def table_cells(self) -> int:
        return 0 if self.table is None else int(self.table.size)


@dataclass
class _GlobalPlan:
    target: int | None
    nodes: tuple  # CPDs kept (ancestral set of used variables and target)
    used: tuple  # variables observed in at least one row (indicator factors)
    order: list
    cost: int  # cells per row
    biggest: int


@dataclass
class _Pattern:
    target: int | None
    target_group: tuple | None  # key of the target's group
    other_groups: list  # keys of the other groups that contain hidden variables
    direct: list  # CPDs whose variables are all observed (looked up directly)


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------


def _to_sample_row_layout(labels: tuple, arr: np.ndarray, want: tuple, m: int) -> np.ndarray:
    """Reorder a contracted factor to (sample, row, *want), adding a sample axis and broadcasting rows if absent."""
    out = ((_SAMPLE,) if _SAMPLE in labels else ()) + ((_ROW,) if _ROW in labels else ()) + want
    arr = _einsum([(labels, arr)], out)
    if _SAMPLE not in out:
        arr = arr[None]
    if _ROW not in out:
        arr = np.broadcast_to(arr[:, None], (arr.shape[0], m) + arr.shape[1:])
    return arr


class CompiledNetwork:
    """Exact, batched inference on a discrete Bayesian network.

    Build it with :meth:`from_pgmpy`.  See the module docstring for the
    algorithm and the behaviour on missing / impossible evidence.
    """

    def __init__(
        self,
        variables: Sequence,
        states: Mapping[Any, Sequence],
        cpds: Mapping[Any, tuple[Sequence, np.ndarray]],
        pseudo_counts: Mapping[Any, np.ndarray] | None = None,
        *,
        max_table_cells: int = 20_000_000,
        max_chunk_cells: int = 4_000_000,
        max_cached_patterns: int = 4096,
        max_cached_cells: int = 25_000_000,
        mode: str = "auto",
    ) -> None:
        """Low-level constructor.

        ``cpds[v] = (scope, values)`` where ``scope[0] == v``, the rest are
        its parents and ``values`` has shape ``[len(states[s]) for s in
        scope]`` with states ordered as in ``states``.  Prefer
        :meth:`from_pgmpy`.

        Limits: ``max_table_cells`` bounds a compiled per-pattern table (and
        its intermediates); larger patterns use row mode, which processes
        rows in chunks of at most ``max_chunk_cells`` intermediate cells.
        ``max_cached_patterns`` / ``max_cached_cells`` bound the LRU caches.
        ``mode`` is "auto" (cost model), "table" (table whenever it fits
        ``max_table_cells``), "rows" (always row mode), "global" (always
        evidence-indicator mode) or "program" (every row through the compiled
        batched program; Dirichlet draws use the per-pattern paths); all give
        the same numbers, the last four exist for testing and tuning.
        """
        if mode not in ("auto", "table", "rows", "global", "program"):
            raise ValueError(f"mode must be 'auto', 'table', 'rows', 'global' or 'program', got {mode!r}")
        self.mode = mode
        self.variables: list = list(variables)
        self.states: dict = {v: list(states[v]) for v in self.variables}
        self._index = {v: i for i, v in enumerate(self.variables)}
        if len(self._index) != len(self.variables):
            raise ValueError("duplicate variable names")
        self._card = [len(self.states[v]) for v in self.variables]
        self._state_index = [{s: j for j, s in enumerate(self.states[v])} for v in self.variables]
        V = len(self.variables)
        self._scope: list[tuple] = [()] * V
        self._values: list[np.ndarray] = [np.empty(0)] * V
        for v in self.variables:
            if v not in cpds:
                raise ValueError(f"no CPD for variable {v!r}")
            scope, values = cpds[v]
            if list(scope)[0] != v:
                raise ValueError(f"CPD of {v!r} must list {v!r} first in its scope")
            idx = tuple(self._index[s] for s in scope)
            arr = np.asarray(values, dtype=np.float64)
            expected = tuple(self._card[i] for i in idx)
            if arr.shape != expected:
                raise ValueError(f"CPD of {v!r} has shape {arr.shape}, expected {expected}")
            self._scope[self._index[v]] = idx
            self._values[self._index[v]] = np.ascontiguousarray(arr)
        # ancestors (including the node) as python-int bitmasks
        self._parents = [sc[1:] for sc in self._scope]
        anc: list[int | None] = [None] * V

        def _anc(i: int) -> int:
            stack = [i]
            while stack:
                j = stack[-1]
                if anc[j] is not None:
                    stack.pop()
                    continue
                todo = [p for p in self._parents[j] if anc[p] is None]
                if todo:
                    if len(stack) > V + 1:
                        raise ValueError("the network has a directed cycle")
                    stack.extend(todo)
                    continue
                m = 1 << j
                for p in self._parents[j]:
                    m |= anc[p]  # type: ignore[operator]
                anc[j] = m
                stack.pop()
            return anc[i]  # type: ignore[return-value]

        for i in range(V):
            _anc(i)
        self._anc: list[int] = anc  # type: ignore[assignment]

        self.max_table_cells = int(max_table_cells)
        self.max_chunk_cells = int(max_chunk_cells)
        self.max_cached_patterns = int(max_cached_patterns)
        self.max_cached_cells = int(max_cached_cells)
        self._table_floor = 50_000  # tables this cheap are always built
        self._table_reuse = 8  # a cached table is expected to serve ~8x more rows
        # a pattern whose rows cost at most this many cells in evidence-indicator
        # mode is not compiled on its own (compiling costs a few ms of Python)
        self._global_cells = 300_000
        self._patterns: OrderedDict = OrderedDict()
        self._groups: OrderedDict = OrderedDict()
        self._cached_cells = 0

        self._pseudo: dict[int, np.ndarray] = {}
        self._native: dict[int, tuple] = {}  # var -> (native shape, state permutations)
        if pseudo_counts:
            for v, a in pseudo_counts.items():
                if v not in self._index:
                    raise ValueError(f"pseudo_counts for unknown variable {v!r}")
                i = self._index[v]
                a = np.asarray(a, dtype=np.float64)
                ncols = _prod(self._card[p] for p in self._scope[i][1:])
                if a.shape != (self._card[i], ncols):
                    raise ValueError(
                        f"pseudo_counts[{v!r}] has shape {a.shape}, expected {(self._card[i], ncols)}"
                    )
                if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a.sum(axis=0) <= 0):
                    raise ValueError(
                        f"pseudo_counts[{v!r}] must be finite, >= 0, with a positive sum in every column"
                    )
                self._pseudo[i] = a

    # ------------------------------------------------------------------ build
    @classmethod
    def from_pgmpy(cls, model, pseudo_counts: dict[str, np.ndarray] | None = None, **kwargs) -> "CompiledNetwork":
        """Compile a ``pgmpy`` discrete Bayesian network.

        ``pseudo_counts[var]`` are Dirichlet concentrations with the shape of
        ``model.get_cpds(var).get_values()`` (same row/column order).
        Extra keyword arguments go to the constructor (cache / size limits).
        Each CPD column is renormalised to sum to one, as pgmpy does when it
        samples: some bundled networks (sachs, alarm) store columns that are
        off by up to 1e-7, which is not a distribution.
        """
        variables = list(model.nodes())
        cpd_of = {}
        for v in variables:
            cpd = model.get_cpds(v)
            if cpd is None:
                raise ValueError(f"model has no CPD for {v!r}")
            cpd_of[v] = cpd
        states = {v: list(cpd_of[v].state_names[v]) for v in variables}
        cpds = {}
        native = {}
        for v in variables:
            cpd = cpd_of[v]
            scope = list(cpd.variables)
            values = np.asarray(cpd.values, dtype=np.float64)
            shape = tuple(int(c) for c in cpd.cardinality)
            values = values.reshape(shape)
            values = values / values.sum(axis=0, keepdims=True)
            perms = []
            for ax, s in enumerate(scope):
                names = list(cpd.state_names[s])
                if names == states[s]:
                    perms.append(None)
                    continue
                if sorted(map(repr, names)) != sorted(map(repr, states[s])):
                    raise ValueError(f"CPD of {v!r} uses states {names} for {s!r}, model has {states[s]}")
                perm = [names.index(x) for x in states[s]]
                values = np.take(values, perm, axis=ax)
                perms.append(perm)
            cpds[v] = (scope, values)
            native[v] = (shape, perms)
        net = cls(variables, states, cpds, pseudo_counts, **kwargs)
        net._native = {net._index[v]: native[v] for v in variables}
        return net

    # --------------------------------------------------------------- encoding
    def _var(self, name) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown variable {name!r}") from None

    def _state(self, var: int, state) -> int:
        try:
            return self._state_index[var][state]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown state {state!r} for variable {self.variables[var]!r}; "
                f"known states: {self.states[self.variables[var]]}"
            ) from None

    def _encode(self, evidence) -> np.ndarray:
        if isinstance(evidence, Mapping):
            evidence = pd.DataFrame([dict(evidence)])
        if not isinstance(evidence, pd.DataFrame):
            raise TypeError("evidence must be a pandas DataFrame")
        if evidence.columns.duplicated().any():
            dup = list(evidence.columns[evidence.columns.duplicated()])
            raise ValueError(f"duplicate evidence columns: {dup}")
        n = len(evidence)
        codes = np.full((n, len(self.variables)), -1, dtype=np.int64)
        for j, col in enumerate(evidence.columns):
            if col not in self._index:
                raise ValueError(f"unknown evidence column {col!r}; known variables: {self.variables}")
            v = self._index[col]
            series = evidence.iloc[:, j]
            if isinstance(series.dtype, pd.CategoricalDtype):
                series = series.astype(object)
            fcodes, uniques = pd.factorize(series, use_na_sentinel=True)
            if len(uniques) == 0:
                continue
            lut = np.empty(len(uniques), dtype=np.int64)
            for u_i, u in enumerate(np.asarray(uniques, dtype=object)):
                try:
                    lut[u_i] = self._state_index[v][u]
                except (KeyError, TypeError):
                    raise ValueError(
                        f"unknown state {u!r} in evidence column {col!r}; known states: {self.states[col]}"
                    ) from None
            present = fcodes >= 0
            codes[present, v] = lut[fcodes[present]]
        return codes

    # ------------------------------------------------------------ compilation
    def _cache_get(self, cache: OrderedDict, key):
        item = cache.get(key)
        if item is not None:
            cache.move_to_end(key)
        return item

    def _pattern(self, target: int | None, obs: tuple) -> _Pattern:
        key = (target, obs)
        pat = self._cache_get(self._patterns, key)
        if pat is not None:
            return pat
        obs_set = set(obs)
        keep = 0
        for v in obs:
            keep |= self._anc[v]
        if target is not None:
            keep |= self._anc[target]
        nodes = [i for i in range(len(self.variables)) if (keep >> i) & 1]
        hidden = {i for i in nodes if i not in obs_set}
        # union-find over hidden variables
        parent = {h: h for h in hidden}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for f in nodes:
            hs = [v for v in self._scope[f] if v in hidden]
            for h in hs[1:]:
                a, b = find(hs[0]), find(h)
                if a != b:
                    parent[a] = b
        comps: dict = {}
        for f in nodes:
            hs = [v for v in self._scope[f] if v in hidden]
            key_c = ("h", find(hs[0])) if hs else ("f", f)
            comps.setdefault(key_c, []).append(f)
        tgt_key = None
        others = []
        tgt_root = find(target) if target is not None else None
        direct = []
        for ck, factors in comps.items():
            if ck[0] == "f":
                direct.append(factors[0])
                continue
            factors = tuple(sorted(factors))
            vars_ = set()
            for f in factors:
                vars_.update(self._scope[f])
            kept = tuple(sorted(vars_ & obs_set))
            is_t = ck == ("h", tgt_root)
            gkey = (factors, kept, target if is_t else None)
            self._group(gkey)  # compile now (cheap), cached separately
            if is_t:
                tgt_key = gkey
            else:
                others.append(gkey)
        pat = _Pattern(target, tgt_key, others, sorted(direct))
        self._patterns[key] = pat
        while len(self._patterns) > self.max_cached_patterns:
            self._patterns.popitem(last=False)
        return pat

    def _group(self, gkey) -> _Group:
        g = self._cache_get(self._groups, gkey)
        if g is not None:
            return g
        factors, kept, target = gkey
        kept_set = set(kept)
        vars_ = set()
        for f in factors:
            vars_.update(self._scope[f])
        elim = sorted(v for v in vars_ if v not in kept_set and v != target)
        scopes = [self._scope[f] for f in factors]
        t_order, t_cost, t_max = _greedy_order(scopes, elim, self._card)
        final = _prod(self._card[v] for v in kept) * (self._card[target] if target is not None else 1)
        t_cost += final * len(factors)
        t_max = max(t_max, final)
        g = _Group(
            factors=factors,
            kept_obs=kept,
            target=target,
            table_order=t_order,
            table_cost=t_cost,
            table_max=t_max,
            dims=tuple(self._card[v] for v in kept),
        )
        self._groups[gkey] = g
        self._evict_groups()
        return g

    def _row_plan(self, g: _Group) -> _Group:
        """Elimination plan for row mode (observed variables sliced away)."""
        if g.row_order is None:
            kept_set = set(g.kept_obs)
            k = self._card[g.target] if g.target is not None else 1
            scopes = [tuple(v for v in self._scope[f] if v not in kept_set) for f in g.factors]
            elim = sorted({v for sc in scopes for v in sc} - {g.target})
            order, cost, biggest = _greedy_order(scopes, elim, self._card)
            g.row_cost = max(1, cost + len(g.factors) * k)
            g.row_max = max(1, biggest, k)
            g.row_order = order
        return g

    def _evict_groups(self) -> None:
        limit = 4 * self.max_cached_patterns
        while len(self._groups) > limit or self._cached_cells > self.max_cached_cells:
            _, old = self._groups.popitem(last=False)
            self._cached_cells -= old.table_cells
            if not self._groups:
                break

    # -------------------------------------------------------------- execution
    def _factor(self, f: int, params: Mapping[int, np.ndarray] | None) -> tuple[tuple, np.ndarray]:
        if params is not None and f in params:
            return (_SAMPLE,) + self._scope[f], params[f]
        return self._scope[f], self._values[f]

    @staticmethod
    def _contract(ops: list, keep_labels: tuple, logscale=None) -> tuple[tuple, np.ndarray, Any]:
        """Multiply ``ops`` and sum out every variable not in ``keep_labels``.

        Without ``logscale`` (table mode) one einsum (folded in blocks to stay
        under numpy's operand limit).  With ``logscale`` (row mode) many
        operands are folded pairwise, rescaling every partial product per row
        so long products of small numbers cannot underflow.
        """
        keep = set(keep_labels)
        block = 24 if logscale is None else 3
        ops = list(ops)
        if logscale is not None and len(ops) > block:
            ops.sort(key=lambda fa: fa[1].size)
            block = 2
        while True:
            head, rest = ops[:block], ops[block:]
            needed = keep.union(*[lab for lab, _ in rest]) if rest else keep
            out = tuple(lab for lab in _merged_labels([lab for lab, _ in head]) if lab in needed or lab in (_SAMPLE, _ROW))
            arr = _einsum(head, out)
            if logscale is not None:
                arr, logscale = _rescale(out, arr, logscale)
            if not rest:
                return out, arr, logscale
            ops = [(out, arr)] + rest

    def _eliminate(self, factors: list, order: Sequence[int], logscale=None) -> tuple[list, Any]:
        for x in order:
            take = [fa for fa in factors if x in fa[0]]
            if not take:
                continue
            factors = [fa for fa in factors if x not in fa[0]]
            out = _merged_labels([lab for lab, _ in take], drop=x)
            out, arr, logscale = self._contract(take, out, logscale)
            factors.append((out, arr))
        return factors, logscale

    def _build_table(self, g: _Group, params) -> np.ndarray:
        """Table over (kept_obs..., [target]) -> shape ([S], prod(dims), [k])."""
        factors = [self._factor(f, params) for f in g.factors]
        factors, _ = self._eliminate(factors, g.table_order)
        sampled = any(_SAMPLE in lab for lab, _ in factors)
        out = ((_SAMPLE,) if sampled else ()) + g.kept_obs + ((g.target,) if g.target is not None else ())
        lab, arr, _ = self._contract(factors, out)
        arr = _einsum([(lab, arr)], out)
        shape = (arr.shape[0],) if sampled else ()
        shape += (_prod(g.dims),)
        if g.target is not None:
            shape += (self._card[g.target],)
        return arr.reshape(shape)

    def _eval_rows(self, g: _Group, codes: np.ndarray, params, n_s: int) -> tuple[np.ndarray, np.ndarray]:
        """Row mode. Returns (values (S|1, n, [k]), logscale (S|1, n))."""
        n = codes.shape[0]
        self._row_plan(g)
        kept = set(g.kept_obs)
        chunk = max(1, int(self.max_chunk_cells // max(1, g.row_max * n_s)))
        vals_out = []
        logs_out = []
        for start in range(0, n, chunk):
            c = codes[start : start + chunk]
            m = c.shape[0]
            logscale = np.zeros((1, m))
            factors = []
            for f in g.factors:
                labels, arr = self._factor(f, params)
                nb = _batch_ndim(labels)
                scope = labels[nb:]
                obs_axes = [a for a, v in enumerate(scope) if v in kept]
                if obs_axes:
                    free_axes = [a for a, v in enumerate(scope) if v not in kept]
                    perm = list(range(nb)) + [a + nb for a in obs_axes] + [a + nb for a in free_axes]
                    arr = arr.transpose(perm)
                    idx = (slice(None),) * nb + tuple(c[:, scope[a]] for a in obs_axes)
                    arr = arr[idx]
                    labels = labels[:nb] + (_ROW,) + tuple(scope[a] for a in free_axes)
                factors.append((labels, arr))
            factors, logscale = self._eliminate(factors, g.row_order, logscale)
            want = (g.target,) if g.target is not None else ()
            acc_lab, acc, logscale = self._contract(factors, want, logscale)
            acc = _to_sample_row_layout(acc_lab, acc, want, m)
            vals_out.append(acc)
            logs_out.append(np.broadcast_to(logscale, acc.shape[:2]))
        return np.concatenate(vals_out, axis=1), np.concatenate(logs_out, axis=1)

    def _eval_group(self, gkey, codes: np.ndarray, params, n_s: int) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalised group value per row: (S|1, n, [k]) and log scale (S|1, n)."""
        g = self._group(gkey)
        n = codes.shape[0]
        sampled = params is not None and any(f in params for f in g.factors)
        s_eff = n_s if sampled else 1
        table = None
        if not sampled and g.table is not None:
            table = g.table[None]
        else:
            ok = self.mode != "rows" and g.table_max * s_eff <= self.max_table_cells
            if ok and self.mode == "auto":
                reuse = 1 if sampled else self._table_reuse
                ok = g.table_cost <= self._table_floor or (
                    g.table_cost <= reuse * self._row_plan(g).row_cost * n
                )
            if ok:
                t = self._build_table(g, params if sampled else None)
                if sampled:
                    table = t
                else:
                    g.table = t
                    self._cached_cells += t.size
                    self._evict_groups()
                    table = t[None]
        if table is None:
            return self._eval_rows(g, codes, params if sampled else None, s_eff)
        if g.kept_obs:
            flat = np.ravel_multi_index(tuple(codes[:, v] for v in g.kept_obs), g.dims)
            vals = table[:, flat]
        else:
            vals = np.broadcast_to(table[:, :1], (table.shape[0], n) + table.shape[2:])
        mass = vals.sum(axis=-1) if g.target is not None else vals
        bad = np.flatnonzero((mass == 0).any(axis=0))
        logscale = np.zeros(vals.shape[:2])
        if bad.size:  # zero or underflow: redo those rows with per-row rescaling
            rv, rl = self._eval_rows(g, codes[bad], params if sampled else None, s_eff)
            vals = np.array(vals, copy=True)
            vals[:, bad] = rv
            logscale[:, bad] = rl
        return vals, logscale

    @staticmethod
    def _normalise(vals: np.ndarray, ls: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior rows from unnormalised target values; NaN where P(e) = 0."""
        z = vals.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = lp + np.log(z) + ls
            p = vals / z[..., None]
        return np.where(np.isfinite(lp)[..., None], p, np.nan), lp

    def _global_plan(self, target: int | None, used: tuple) -> "_GlobalPlan":
        """One elimination plan for all rows whose observed variables lie in ``used``."""
        key = ("global", target, used)
        plan = self._cache_get(self._patterns, key)
        if plan is not None:
            return plan
        keep = 0
        for v in used:
            keep |= self._anc[v]
        if target is not None:
            keep |= self._anc[target]
        nodes = tuple(i for i in range(len(self.variables)) if (keep >> i) & 1)
        elim = [v for v in nodes if v != target]
        order, cost, biggest = _greedy_order([self._scope[f] for f in nodes], elim, self._card)
        k = self._card[target] if target is not None else 1
        plan = _GlobalPlan(target, nodes, used, order, max(1, cost + len(nodes) * k), max(1, biggest, k))
        self._patterns[key] = plan
        while len(self._patterns) > self.max_cached_patterns:
            self._patterns.popitem(last=False)
        return plan

    def _eval_global(self, plan: "_GlobalPlan", codes: np.ndarray, params, n_s: int):
        """Evidence-indicator mode: every row in one elimination, whatever its pattern.

        Each used variable gets an indicator factor (rows x states): one-hot
        where observed, ones where not.  Returns like :meth:`_eval_rows`.
        """
        n = codes.shape[0]
        s_eff = n_s if params and any(f in params for f in plan.nodes) else 1
        chunk = max(1, int(self.max_chunk_cells // (plan.biggest * s_eff)))
        target = plan.target
        vals_out, logs_out = [], []
        for start in range(0, n, chunk):
            c = codes[start : start + chunk]
            m = c.shape[0]
            logscale = np.zeros((1, m))
            factors = [self._factor(f, params) for f in plan.nodes]
            for v in plan.used:
                col = c[:, v]
                lam = np.ones((m, self._card[v]))
                hit = np.flatnonzero(col >= 0)
                if hit.size:
                    lam[hit] = 0.0
                    lam[hit, col[hit]] = 1.0
                factors.append(((_ROW, v), lam))
            factors, logscale = self._eliminate(factors, plan.order, logscale)
            want = (target,) if target is not None else ()
            if factors:
                acc_lab, acc, logscale = self._contract(factors, want, logscale)
            else:
                acc_lab, acc = (), np.ones(())
            acc = _to_sample_row_layout(acc_lab, acc, want, m)
            vals_out.append(acc)
            logs_out.append(np.broadcast_to(logscale, acc.shape[:2]))
        return np.concatenate(vals_out, axis=1), np.concatenate(logs_out, axis=1)

    def _program(self, target: int | None, used: tuple, rows: int) -> ElimProgram:
        """The compiled batched program for ``target`` with likelihoods on ``used`` (LRU-cached).

        A cached program compiled for a small batch is recompiled once with the order search when a
        batch of ``rows`` large enough to repay it arrives.
        """
        key = ("program", target, used)
        prog = self._cache_get(self._patterns, key)
        if prog is not None and (prog.searched or prog.cells * rows <= SEARCH_WORK):
            return prog
        keep = 0
        for v in used:
            keep |= self._anc[v]
        if target is not None:
            keep |= self._anc[target]
        nodes = [i for i in range(len(self.variables)) if (keep >> i) & 1]
        prog = compile_program(target, nodes, used, self._scope, self._values, self._card, rows=rows)
        self._patterns[key] = prog
        while len(self._patterns) > self.max_cached_patterns:
            self._patterns.popitem(last=False)
        return prog

    def _eval_program(self, target: int | None, codes: np.ndarray, used: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Every row through one compiled program, whatever its pattern (see models/batched_elimination.py).

        Rows the program flags (possible underflow, impossible evidence) are recomputed in
        evidence-indicator mode with pairwise rescaling. Returns like :meth:`_eval_global`.
        """
        n = codes.shape[0]
        prog = self._program(target, used, n)
        chunk = max(1, int(min(self.max_chunk_cells, _PROGRAM_CHUNK_CELLS) // prog.biggest))
        k = self._card[target] if target is not None else None
        vals = np.empty((n, k) if k is not None else (n,))
        logscale = np.empty(n)
        suspect = np.zeros(n, dtype=bool)
        for start in range(0, n, chunk):
            v, ls, bad = prog.run(codes[start : start + chunk])
            vals[start : start + chunk] = v
            logscale[start : start + chunk] = ls
            suspect[start : start + chunk] = bad
        if suspect.any():
            rows = np.flatnonzero(suspect)
            c = codes[rows]
            plan = self._global_plan(target, tuple(np.flatnonzero((c >= 0).any(axis=0)).tolist()))
            rv, rl = self._eval_global(plan, c, None, 1)
            vals[rows] = rv[0]
            logscale[rows] = rl[0]
        return vals[None], logscale[None]

    def _run(self, target: int | None, codes: np.ndarray, params=None, n_s: int = 1):
        """Posterior of ``target`` (or None) and log P(evidence) per row.

        Returns (post (S|1, n, k) or None, logp (S|1, n)).
        """
        n = codes.shape[0]
        s_out = n_s if params else 1
        k = self._card[target] if target is not None else 0
        t_obs = None
        if target is not None:
            t_obs = codes[:, target].copy()
            if (t_obs >= 0).any():
                codes = codes.copy()
                codes[:, target] = -1
        post = np.full((s_out, n, k), np.nan) if target is not None else None
        logp = np.zeros((s_out, n))
        if n == 0:
            return post, logp
        mask = codes >= 0
        packed = np.packbits(mask, axis=1)
        keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        sampled = bool(params)
        fast = not sampled and self.mode in ("auto", "program")
        if fast and self.mode == "auto":
            # a pattern seen once in this batch is cheaper through the compiled program than compiled on
            # its own; recurring patterns keep the per-pattern plans (cached tables)
            counts = np.bincount(inverse)
            single = counts[inverse] == 1
        elif fast:
            single = np.ones(n, dtype=bool)
        else:
            single = np.zeros(n, dtype=bool)
        program_rows = [np.flatnonzero(single)] if single.any() else []
        order = np.argsort(inverse, kind="stable")
        order = order[~single[order]]
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        pattern_rows = np.split(order, bounds) if order.size else []
        use_global = self.mode == "global"
        used_all = tuple(np.flatnonzero(mask.any(axis=0)).tolist())
        g_plan = None
        if self.mode == "auto" and pattern_rows:
            g_plan = self._program(target, used_all, n) if fast else self._global_plan(target, used_all)
        global_rows = []
        for rows in pattern_rows:
            obs = tuple(int(v) for v in np.flatnonzero(mask[rows[0]]))
            if use_global or (
                g_plan is not None
                and (sampled or (target, obs) not in self._patterns)
                and len(rows) * s_out * (g_plan.cells if fast else g_plan.cost) <= self._global_cells
            ):
                (program_rows if fast else global_rows).append(rows)
                continue
            pat = self._pattern(target, obs)
            c = codes[rows]
            lp = np.zeros((1, len(rows)))
            for f in pat.direct:
                labels, arr = self._factor(f, params)
                idx = tuple(c[:, v] for v in self._scope[f])
                vals = arr[(slice(None),) + idx] if labels[0] == _SAMPLE else arr[idx][None]
                with np.errstate(divide="ignore"):
                    lp = lp + np.log(vals)
            for gkey in pat.other_groups:
                vals, ls = self._eval_group(gkey, c, params, n_s)
                with np.errstate(divide="ignore"):
                    lp = lp + np.log(vals) + ls
            if target is not None:
                vals, ls = self._eval_group(pat.target_group, c, params, n_s)
                post[:, rows], lp = self._normalise(vals, ls, lp)
            logp[:, rows] = lp
        if program_rows:
            rows = np.concatenate(program_rows)
            vals, ls = self._eval_program(target, codes[rows], used_all)
            if target is not None:
                post[:, rows], lp = self._normalise(vals, ls, np.zeros((1, len(rows))))
            else:
                with np.errstate(divide="ignore"):
                    lp = np.log(vals) + ls
            logp[:, rows] = lp
        if global_rows:
            rows = np.concatenate(global_rows)
            used = tuple(np.flatnonzero(mask[rows].any(axis=0)).tolist())
            plan = self._global_plan(target, used)
            vals, ls = self._eval_global(plan, codes[rows], params, n_s)
            if target is not None:
                post[:, rows], lp = self._normalise(vals, ls, np.zeros((1, len(rows))))
            else:
                with np.errstate(divide="ignore"):
                    lp = np.log(vals) + ls
            logp[:, rows] = lp
        logp[:, ~mask.any(axis=1)] = 0.0  # P(nothing observed) is exactly one, not one up to rounding
        if target is not None and (t_obs >= 0).any():
            rows = np.flatnonzero(t_obs >= 0)
            st = t_obs[rows]
            p_obs = post[:, rows, st]  # (S, m)
            onehot = np.zeros((s_out, len(rows), k))
            onehot[:, np.arange(len(rows)), st] = 1.0
            onehot = np.where((p_obs > 0)[..., None], onehot, np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                logp[:, rows] = logp[:, rows] + np.log(p_obs)
            logp[:, rows] = np.where(np.isnan(logp[:, rows]), -np.inf, logp[:, rows])
            post[:, rows] = onehot
        return post, logp

    # ----------------------------------------------------------------- public
    def posterior(self, target: str, evidence: pd.DataFrame) -> np.ndarray:
        """P(target | evidence row) for every row: shape (n_rows, n_states).

        Columns follow ``self.states[target]``.  Rows with impossible
        evidence are all-NaN.  Evidence on the target gives a one-hot row.
        """
        t = self._var(target)
        codes = self._encode(evidence)
        post, _ = self._run(t, codes)
        return post[0]

    def log_evidence(self, evidence: pd.DataFrame) -> np.ndarray:
        """log P(evidence row) for every row (0.0 if nothing is observed, -inf if impossible)."""
        codes = self._encode(evidence)
        _, logp = self._run(None, codes)
        return logp[0]

    def _sample_params(self, n_samples: int, seed: int) -> dict[int, np.ndarray]:
        rng = np.random.default_rng(seed)
        params = {}
        for i in sorted(self._pseudo):
            alpha = self._pseudo[i]
            g = rng.standard_gamma(alpha, size=(n_samples,) + alpha.shape)
            tot = g.sum(axis=1, keepdims=True)
            mean = alpha / alpha.sum(axis=0, keepdims=True)
            g = np.where(tot > 0, g / np.where(tot > 0, tot, 1.0), mean[None])
            shape, perms = self._native.get(i, (tuple(self._card[v] for v in self._scope[i]), None))
            arr = g.reshape((n_samples,) + tuple(shape))
            if perms:
                for ax, perm in enumerate(perms):
                    if perm is not None:
                        arr = np.take(arr, perm, axis=ax + 1)
            params[i] = np.ascontiguousarray(arr)
        return params

    def posterior_interval(
        self,
        target: str,
        evidence: pd.DataFrame,
        state,
        level: float = 0.9,
        n_samples: int = 200,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed credible interval of P(target=state | evidence) per row.

        CPDs of the variables in ``pseudo_counts`` are drawn from their
        Dirichlet posteriors (column-wise), the others stay fixed; the exact
        posterior is computed under each of ``n_samples`` draws (vectorised
        over draws).  Deterministic for a given ``seed``.
        """
        if not self._pseudo:
            raise ValueError("posterior_interval needs pseudo_counts (pass them to from_pgmpy)")
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        t = self._var(target)
        s = self._state(t, state)
        codes = self._encode(evidence)
        params = self._sample_params(n_samples, seed)
        post, _ = self._run(t, codes, params, n_samples)
        p = post[..., s]  # (S, n)
        if p.shape[0] != n_samples:
            p = np.broadcast_to(p, (n_samples, p.shape[1]))
        q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
        lo = np.full(p.shape[1], np.nan)
        hi = np.full(p.shape[1], np.nan)
        has_nan = np.isnan(p).any(axis=0)
        clean = ~has_nan
        if clean.any():
            qs = np.quantile(p[:, clean], q, axis=0)
            lo[clean], hi[clean] = qs[0], qs[1]
        for j in np.flatnonzero(has_nan):  # draws under which the evidence is impossible
            col = p[:, j][~np.isnan(p[:, j])]
            if col.size:
                lo[j], hi[j] = np.quantile(col, q)
        return lo, hi

    def value_of_information(
        self,
        target: str,
        evidence: pd.DataFrame,
        state,
        candidates: list[str] | None = None,
    ) -> pd.DataFrame:
        """Expected |change| of P(target=state | e) from observing each candidate.

        ``sum_v P(C=v | e) * |P(target=state | e, C=v) - P(target=state | e)|``
        for every row and every candidate C unobserved in that row (NaN where
        C is observed or the evidence is impossible).  Default candidates: all
        variables except the target.
        """
        t = self._var(target)
        s = self._state(t, state)
        if candidates is None:
            candidates = [v for v in self.variables if v != target]
        cand = [self._var(c) for c in candidates]
        codes = self._encode(evidence)
        n = codes.shape[0]
        out = np.full((n, len(cand)), np.nan)
        if n:
            post0, _ = self._run(t, codes)
            p0 = post0[0, :, s]
            blocks = []
            for j, c in enumerate(cand):
                rows = np.flatnonzero((codes[:, c] < 0) & ~np.isnan(p0))
                if rows.size == 0:
                    continue
                pc, _ = self._run(c, codes[rows])
                kc = self._card[c]
                rep = np.repeat(codes[rows], kc, axis=0)
                rep[:, c] = np.tile(np.arange(kc), rows.size)
                blocks.append((j, rows, pc[0], rep))
            if blocks:
                big = np.concatenate([b[3] for b in blocks], axis=0)
                pt_all, _ = self._run(t, big)
                pt_all = pt_all[0, :, s]
                off = 0
                for j, rows, pc, rep in blocks:
                    kc = pc.shape[1]
                    pt = pt_all[off : off + rep.shape[0]].reshape(rows.size, kc)
                    off += rep.shape[0]
                    with np.errstate(invalid="ignore"):
                        term = np.where(pc > 0, pc * np.abs(pt - p0[rows, None]), 0.0)
                    out[rows, j] = term.sum(axis=1)
        index = evidence.index if isinstance(evidence, pd.DataFrame) else pd.RangeIndex(n)
        return pd.DataFrame(out, index=index, columns=list(candidates))

    # ------------------------------------------------------------------ misc
    def clear_cache(self) -> None:
        """Drop all compiled patterns and cached tables."""
        self._patterns.clear()
        self._groups.clear()
        self._cached_cells = 0

    def __repr__(self) -> str:
        return (
            f"CompiledNetwork({len(self.variables)} variables, "
            f"{len(self._patterns)} cached patterns, {self._cached_cells} cached cells)"
        )
