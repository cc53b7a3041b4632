"""Shared fixtures of the slope tests (``test_shared_slopes``, ``test_target_slopes``,
``test_conv_targets``): a margin property's region and a root-only ``vnn-unsat`` certificate whose
leaves hold only with the region's supplied slopes."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from torchlean.certificates import fast_engine as fe
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import alpha
from torchlean.verify import graph_relu as gr
from torchlean.verify.table import network_id


def margin_region(lo: Any, hi: Any, label: int, others: Any, ts: Any, n_out: int) -> Region:
    """The unsafe region y_label - y_j <= t_j for some j in ``others`` (one disjunct per j)."""
    a = [tuple(Fraction(int(i == label) - int(i == j)) for i in range(n_out)) for j in others]
    return Region(lo, hi, tuple((Atom(aj, tj, False),) for aj, tj in zip(a, ts)))


def root_cert(t: Any, reg: Region, n_in: int, n_out: int, st2: Any, slopes: Any) -> tuple[Spec, dict]:
    """A one-region certificate with a root leaf per disjunct at half the bound the state ``st2``
    (computed with ``slopes``) gives it, and ``slopes`` as the region's ``"arg_slopes"``."""
    spec = Spec(n_in, n_out, (reg,))
    trees = []
    for j in range(len(reg.disjuncts)):
        lb = fe.bound_forms(st2, gr.Disjunct(t.bg, reg, j).F)[0, 0]
        assert lb > 0
        trees.append([["leaf", [[[0], str(Fraction(float(lb / 2)))]]]])
    entry = {"per_disjunct": trees, "arg_slopes": alpha.shared_entries(slopes)}
    cert = {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": [entry]}
    return spec, cert
