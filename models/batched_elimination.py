"""A compiled, batched elimination program: one plan answers every evidence row, whatever its pattern.

Used by ``models/compiled_network.py`` for rows whose observation pattern is rare (every row its own
pattern), where compiling one plan per pattern costs more than the inference itself.

The program is the collect pass of a junction tree towards the target: an elimination order (the
cheaper of greedy min-fill and greedy min-weight; for costly networks also the best of a few seeded
randomised greedy orders, scored by the batched cost) fixes the cliques; each step multiplies the
batched factors holding one variable and contracts them with the step's static clique table (the
product of its CPDs) by a batched matrix product, producing the message to the next clique.
Evidence enters as likelihood vectors on a trailing batch axis (one-hot where observed, ones where
not), so the plan does not depend on which variables a row observes -- only on which variables
*some* row observes (barren nodes outside the ancestral set of those and the target are dropped).
Steps that touch no evidence are evaluated once at compile time. Every message is divided by its
per-row maximum and the logarithm of that scale accumulated, so long products do not underflow; a
row whose scale falls below ``TINY`` at some step (possible only with extreme probabilities, or
when the evidence is impossible) is flagged for the caller to recompute with pairwise rescaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ElimProgram", "best_order", "compile_program"]

TINY = 1e-200  # a message maximum below this may hide underflow inside a step: recompute the row
SEARCH_CELLS = 50_000  # programs costlier than this per row try randomised elimination orders too,
SEARCH_WORK = 100_000_000  # when the batch makes it worth it (cells per row x rows above this)
SEARCH_TRIES = 24
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # einsum labels of static tables


def _greedy(adj: dict[int, set], elim: Sequence[int], card: Sequence[int], fill: bool,
            rng: np.random.Generator | None = None) -> tuple[list, int]:
    """Greedy elimination order on a copy of ``adj``; cost = sum of clique sizes (cells).

    With ``rng`` the choice is randomised: weight x (1 + fill-in) x a factor in [0.5, 1.5).
    """
    adj = {v: set(n) for v, n in adj.items()}
    remaining = set(elim)
    order: list = []
    cost = 0

    def weight(v: int) -> int:
        w = card[v]
        for u in adj[v]:
            w *= card[u]
        return w

    def fill_in(v: int) -> int:
        nb = list(adj[v])
        missing = 0
        for i, a in enumerate(nb):
            na = adj[a]
            for b in nb[i + 1 :]:
                if b not in na:
                    missing += 1
        return missing

    while remaining:
        if rng is not None:
            v = min(sorted(remaining), key=lambda x: weight(x) * (1 + fill_in(x)) * rng.uniform(0.5, 1.5))
        elif fill:
            v = min(remaining, key=lambda x: (fill_in(x), weight(x), x))
        else:
            v = min(remaining, key=lambda x: (weight(x), x))
        cost += weight(v)
        order.append(v)
        remaining.discard(v)
        nb = adj.pop(v)
        for u in nb:
            adj[u].discard(v)
            adj[u].update(nb - {u})
    return order, cost


def best_order(scopes: Sequence[Sequence[int]], elim: Sequence[int], card: Sequence[int],
               cost=None, tries: int = 0) -> tuple[list, int]:
    """The cheapest of greedy min-fill, greedy min-weight and ``tries`` randomised greedy orders.

    ``cost(order)`` scores an order (default: total clique cells); randomised tries use a fixed seed,
    so the order is deterministic.
    """
    adj: dict[int, set] = {}
    for sc in scopes:
        for v in sc:
            adj.setdefault(v, set()).update(sc)
    for v, s in adj.items():
        s.discard(v)
    elim = [v for v in elim if v in adj]
    best = None
    rng = np.random.default_rng(0)
    for i in range(2 + tries):
        order, cells = _greedy(adj, elim, card, fill=i == 0, rng=rng if i >= 2 else None)
        score = cells if cost is None else cost(order)
        if best is None or score < best[1]:
            best = (order, score)
    return best  # type: ignore[return-value]


def _batched_cells(order: Sequence[int], factors: Sequence[tuple], card: Sequence[int]) -> int:
    """Cells per row the program touches for ``order`` (cost model of :func:`compile_program`)."""
    facs = [(tuple(labels), batched) for labels, batched, _ in factors]
    total = 0
    for x in order:
        take = [fa for fa in facs if x in fa[0]]
        facs = [fa for fa in facs if x not in fa[0]]
        scope = {v for labels, _ in take for v in labels}
        if any(b for _, b in take):
            u = {v for labels, b in take if b for v in labels}
            total += _size(tuple(scope), card) + _size(tuple(u), card) * sum(1 for _, b in take if b)
        facs.append((tuple(scope - {x}), any(b for _, b in take)))
    return total


@dataclass
class _Step:
    """One message: the batched inputs multiplied on (S, X) and contracted with the static table.

    S = kept variables some batched input holds, X = summed-out variables some batched input holds,
    O = kept variables only static inputs hold. The message is ``static (S, O, X) @ F (S, X, rows)``
    (a batched matrix product), laid out (S..., O..., rows).
    """

    batched: tuple  # (slot, transpose or None, shape on (S..., X..., rows) with -1 for rows)
    static: np.ndarray | None  # (|S|, |O|, |X|), variables outside S, O, X already summed out
    f_shape: tuple  # (|S|, |X|)
    out_shape: tuple  # message shape without the rows axis
    output: int  # slot of the message
    out_perm: tuple | None = None  # axis order the consumer reads, applied while rescaling

@dataclass
class ElimProgram:
    """A compiled plan: evaluate with :meth:`run` on integer-coded evidence rows."""

    target: int | None
    used: tuple  # variables with a likelihood vector (observed in some row)
    card: tuple
    steps: list
    final: int | None  # slot holding the batched result (target states, rows) or (rows,)
    final_static: np.ndarray | None  # the result when no step touches evidence
    lam_slot: dict  # variable -> slot of its likelihood vector
    cells: int  # cells per row of the batched steps (cost model)
    biggest: int  # largest batched intermediate per row
    searched: bool = False  # whether a costly plan already had its randomised order search

    def run(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values (n, [k]), log scale (n,), suspect rows (n,) bool) for ``codes`` (rows x variables, -1 = unobserved).

        ``values * exp(log scale)`` is the unnormalised P(target, evidence) (or P(evidence) without a
        target). Suspect rows (possible underflow or impossible evidence) must be recomputed.
        """
        n = codes.shape[0]
        slots: dict = {}
        logscale = np.zeros(n)
        suspect = np.zeros(n, dtype=bool)
        for v, slot in self.lam_slot.items():
            col = codes[:, v]
            lam = (col[None, :] == np.arange(self.card[v])[:, None]) | (col[None, :] < 0)
            slots[slot] = lam.astype(np.float64)  # (states, rows): the batch axis is last
        for st in self.steps:
            acc = None
            owned = False
            for slot, perm, shape in st.batched:
                a = slots.pop(slot)
                if perm is not None:
                    a = a.transpose(perm)
                a = a.reshape(shape[:-1] + (n,))
                if acc is None:
                    acc = a
                elif owned and acc.shape == np.broadcast_shapes(acc.shape, a.shape):
                    acc *= a
                else:
                    acc = acc * a
                    owned = True
            acc = acc.reshape(st.f_shape + (n,))
            if st.static is None:
                acc = acc.sum(axis=1)
            else:
                acc = np.matmul(st.static, acc)
            m = acc.reshape(-1, n).max(axis=0)
            bad = m < TINY
            if bad.any():
                suspect |= bad
                m = np.where(bad, 1.0, m)
            logscale += np.log(m)
            acc = acc.reshape(st.out_shape + (n,))
            if st.out_perm is None:
                acc /= m
            else:  # write the message in its consumer's axis order while dividing (one pass)
                view = acc.transpose(st.out_perm)
                acc = np.divide(view, m, out=np.empty(view.shape))
            slots[st.output] = acc
        if self.final is None:
            vals = self.final_static
            vals = np.ones(n) if vals is None else np.broadcast_to(vals, (n,) + vals.shape)
        else:
            vals = slots[self.final].T
        return vals, logscale, suspect


def compile_program(
    target: int | None,
    nodes: Sequence[int],
    used: Sequence[int],
    scopes: Sequence[tuple],
    values: Sequence[np.ndarray],
    card: Sequence[int],
    rows: int = 1,
) -> ElimProgram:
    """Compile the plan for P(target, e) over the CPDs of ``nodes`` with likelihoods on ``used``.

    ``scopes[f]``/``values[f]`` are the CPD of variable ``f`` (child first). ``rows`` is the size of
    the batch at hand: a costly plan searches for a better order only when the batch repays it.
    """
    used = tuple(sorted(used))
    # a factor is (labels, batched, payload): payload is the array if static, else the slot id
    factors: list = [(tuple(scopes[f]), False, values[f]) for f in nodes]
    lam_slot = {}
    slot = 0
    for v in used:
        lam_slot[v] = slot
        factors.append(((v,), True, slot))
        slot += 1
    elim = [v for v in nodes if v != target]
    node_scopes = [scopes[f] for f in nodes]
    order, _ = best_order(node_scopes, elim, card)
    base = _batched_cells(order, factors, card)
    searched = base > SEARCH_CELLS and base * rows > SEARCH_WORK  # the search costs ~0.1 s
    if searched:
        order, _ = best_order(node_scopes, elim, card, cost=lambda o: _batched_cells(o, factors, card),
                              tries=SEARCH_TRIES)
    steps: list = []
    cells = 0
    biggest = 1

    def einsum_static(ins: list, out_labels: tuple) -> np.ndarray:
        letters: dict = {}
        parts = []
        for labels, _, _ in ins:
            parts.append("".join(letters.setdefault(v, _LETTERS[len(letters)]) for v in labels))
        out = "".join(letters[v] for v in out_labels)
        return np.einsum(",".join(parts) + "->" + out, *[a for _, _, a in ins], optimize=len(ins) > 2)

    def emit(ins: list, kept: tuple) -> tuple:
        """Multiply ``ins`` and sum out every variable not in ``kept``; returns the new factor."""
        nonlocal slot, cells, biggest
        stat = [fa for fa in ins if not fa[1]]
        bat = [fa for fa in ins if fa[1]]
        if not bat:  # no evidence involved: evaluate once now
            return (kept, False, einsum_static(stat, kept))
        u_vars = {v for labels, _, _ in bat for v in labels}
        # axis order follows the largest batched input so that it is read contiguously
        first = max(bat, key=lambda fa: _size(fa[0], card))[0]
        rank = {v: i for i, v in enumerate(first)}
        by_rank = sorted(u_vars, key=lambda v: (rank.get(v, len(rank)), v))
        s_vars = tuple(v for v in by_rank if v in kept)
        o_vars = tuple(v for v in kept if v not in u_vars)
        x_vars = tuple(v for v in by_rank if v not in kept)
        f_labels = s_vars + x_vars
        clique = set(u_vars) | {v for labels, _, _ in stat for v in labels}
        size = _size(tuple(clique), card)
        cells += size + _size(f_labels, card) * len(bat)
        biggest = max(biggest, size, _size(f_labels, card))
        static = None
        if stat:
            full = s_vars + o_vars + x_vars
            held = {v for labels, _, _ in stat for v in labels}
            prod = einsum_static(stat, tuple(v for v in full if v in held))
            prod = np.broadcast_to(prod.reshape([card[v] if v in held else 1 for v in full]), [card[v] for v in full])
            static = np.ascontiguousarray(
                prod.reshape(_size(s_vars, card), _size(o_vars, card), _size(x_vars, card))
            )
        batched = []
        for labels, _, sl in sorted(bat, key=lambda fa: _size(fa[0], card)):
            present = sorted(labels, key=f_labels.index)
            perm = tuple(labels.index(v) for v in present) + (len(labels),)
            shape = tuple(card[v] if v in labels else 1 for v in f_labels) + (-1,)
            batched.append((sl, None if perm == tuple(range(len(perm))) else perm, shape))
        out_labels = s_vars + o_vars
        steps.append(
            _Step(
                tuple(batched),
                static,
                (_size(s_vars, card), _size(x_vars, card)),
                tuple(card[v] for v in out_labels),
                slot,
            )
        )
        fac = (out_labels, True, slot)
        slot += 1
        return fac

    for x in order:
        take = [fa for fa in factors if x in fa[0]]
        factors = [fa for fa in factors if x not in fa[0]]
        out: list = []
        for labels, _, _ in take:
            for v in labels:
                if v != x and v not in out:
                    out.append(v)
        factors.append(emit(take, tuple(out)))
    want = (target,) if target is not None else ()
    final = None
    final_static = None
    if factors:
        labels, batched, payload = emit(factors, want)
        if batched:
            final = payload
        else:
            final_static = payload
    # a message is read by exactly one later step: lay it out in that step's order when it is written
    producer = {st.output: st for st in steps}
    for st in steps:
        fixed = []
        for sl, perm, shape in st.batched:
            if perm is not None and sl in producer:
                producer[sl].out_perm = perm
                perm = None
            fixed.append((sl, perm, shape))
        st.batched = tuple(fixed)
    return ElimProgram(
        target=target,
        used=used,
        card=tuple(card),
        steps=steps,
        final=final,
        final_static=final_static,
        lam_slot=lam_slot,
        cells=max(1, cells),
        biggest=biggest,
        searched=searched or base <= SEARCH_CELLS,
    )


def _size(labels: tuple, card: Sequence[int]) -> int:
    size = 1
    for v in labels:
        size *= card[v]
    return size
