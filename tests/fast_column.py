"""Checks shared by the fast error column's tests (``tests/test_fast_errors*.py``): both columns on
one statement, a certificate's ε against float runs, and the mutations every row's tests make."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import numpy as np

from torchlean.certificates import check
from torchlean.certificates.core import digest
from torchlean.certificates.errorbound import FAST_TRUST, propagate
from torchlean.floats.errorbound import bound_certificate, epsilons, observed_error, searched_error, statement

NOISE = Fraction(1, 10**9)  # (float noise of the fast column's outward sums against exact steps)


def both_columns(g: Any, box: list, fmt: str) -> tuple[list, list]:
    """The fast and the exact column's steps of one statement (fast ranges), after asserting they
    have the same shape and that every fast step is at least the exact one (to ``NOISE``)."""
    st = statement(g, box, fmt, ranges="fast", column="exact")
    exact = propagate(st)
    fast = propagate({**st, "column": "fast"})
    assert len(fast) == len(exact)
    for sf, se in zip(fast, exact):
        assert len(sf) == len(se)
        for a, b in zip(sf, se):
            assert a >= b * (1 - NOISE), (float(a), float(b))
    return fast, exact


def worst_ratio(fast: list, exact: list) -> float:
    """The largest fast / exact over the steps where the exact one is not 0 (at least 1)."""
    return max([1.0] + [float(a / b) for sf, se in zip(fast, exact) for a, b in zip(sf, se) if b])


def covers_float_runs(g: Any, box: list, fmt: str, dtype: Any, n: int, seed: int) -> None:
    """A fast-column certificate of ``g`` on ``box`` is accepted (resting on the float64 model)
    and its ε covers the largest error of ``n`` sampled ``dtype`` runs (plus the reference's own)."""
    cert = bound_certificate(g, box, fmt, column="fast")
    assert cert["statement"]["column"] == "fast"
    v = check(cert)
    assert v.ok and FAST_TRUST in v.trusted, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, n=n, dtype=dtype, seed=seed)
    assert np.all(obs.max_error + obs.reference_error <= eps), (obs.max_error, eps)
    assert np.all(obs.max_error > 0)


def covers_searched_runs(g: Any, box: list, fmt: str, dtype: Any, n: int, rounds: int) -> None:
    """A fast-column certificate of ``g`` on ``box`` is accepted and its ε is above an
    error-maximising search's ``dtype`` runs (``searched_error``) plus the float64 reference's
    certified error (its own binary64 fast certificate: the exact column refuses some of these
    graphs, e.g. a where of a -inf element)."""
    cert = bound_certificate(g, box, fmt, column="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    found = searched_error(g, box, n=n, dtype=dtype, rounds=rounds)
    c64 = bound_certificate(g, box, "binary64", column="fast")
    assert check(c64).ok
    ref = np.array([float(e) for e in epsilons(c64)])
    assert np.all(found + ref <= eps) and found.max() > 0, (found, eps)


def rejected(cert: dict[str, Any], word: str = "") -> None:
    """The checker rejects ``cert`` with ``word`` in its reason."""
    v = check(cert)
    assert not v.ok and word in v.reason, v.reason


def shrunk_epsilon(cert: dict[str, Any], factor: Fraction) -> dict[str, Any]:
    """A copy of ``cert`` whose claimed ε is ``factor`` times its own, re-digested (so only the
    replay can tell)."""
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"] = [str(Fraction(e) * factor) for e in c["statement"]["epsilon"]]
    c["digest"] = digest(c["statement"])
    return c
