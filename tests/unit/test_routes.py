"""Routing figures computed one way: route names from the contract, counts, rates, the override rate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aios.kernel.contracts import ROUTES, Route
from governance.policy import ROUTES as POLICY_ROUTES
from models.routes import override_rate, overridden, route_counts, routing_rates


def test_every_layer_names_the_same_routes():
    assert ROUTES == tuple(r.value for r in Route) == POLICY_ROUTES


def test_rates_are_shares_of_all_claims_and_counts_include_unused_routes():
    routes = pd.Series(["auto_approve"] * 6 + ["human_review"] * 3 + ["refer_siu"])
    assert routing_rates(routes) == {"claims": 10.0, "automation_rate": 0.6, "review_rate": 0.3, "siu_rate": 0.1}
    assert routing_rates(routes.to_numpy()) == routing_rates(list(routes)) == routing_rates(iter(routes))
    assert route_counts(routes) == {"auto_approve": 6, "human_review": 3, "refer_siu": 1, "reject": 0}


def test_no_claims_have_no_rates_unless_the_caller_names_one():
    assert math.isnan(routing_rates([])["automation_rate"])
    assert routing_rates([], empty=0.0) == {"claims": 0.0, "automation_rate": 0.0, "review_rate": 0.0,
                                            "siu_rate": 0.0}


def test_an_override_is_a_final_decision_against_the_leaning():
    approved = [True, True, False, False]
    leaning_approve = [True, False, False, True]
    assert overridden(approved, leaning_approve).tolist() == [False, True, False, True]
    assert override_rate(approved, leaning_approve) == (2, 0.5)
    assert override_rate([], []) == (0, None)
    assert override_rate(np.array([True]), np.array([True])) == (0, 0.0)
