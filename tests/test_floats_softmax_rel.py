"""softmax's relational entry in the rounding-error column (``errornorm.softmax_relational``,
h-tfeps): epsilon against the observed float32 / bfloat16 error on random softmax·V graphs and on a
narrow transformer with the entry active, the entry against the column without it (never looser),
and certificates made by tampered versions of the entry (a wrong coefficient, a dropped source)
rejected by the honest checker with exact (IBP) and fast ranges."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import check, errorbound, errornorm
from torchlean.floats import bound_certificate, epsilons

sys.path.insert(0, str(Path(__file__).parent))
from test_floats_column import as32, box_of, observed  # noqa: E402


def _attention_graph(rng, n=6, scale=1.0, shift=False):
    """x (1, 4) -> scores x W (+ a common x·a on every score when ``shift``: a row-wide error
    softmax cancels) -> softmax -> p V + p V2 (1, 2)."""
    c = {"W": rng.normal(0, scale, (4, n)), "V": rng.normal(1.0, 0.5, (n, 2)),
         "A": rng.normal(0, 4.0, (4, 1))}
    nodes = [("matmul", ["x", "W"], "h")]
    if shift:
        nodes += [("matmul", ["x", "A"], "t"), ("add", ["h", "t"], "h2")]
    nodes += [("softmax", ["h2" if shift else "h"], "p", {"axis": -1}), ("matmul", ["p", "V"], "y")]
    return as32(nodes, c)


def _eps(g, box, fmt="binary32", ranges="ibp"):
    cert = bound_certificate(g, box, fmt, ranges=ranges)
    v = check(cert)
    assert v.ok, v.reason
    return cert, np.array([float(e) for e in epsilons(cert)])


def _off(monkeypatch):
    monkeypatch.setattr(errorbound, "softmax_relational", lambda *a: None)


@pytest.mark.parametrize("seed", range(8))
def test_relational_softmax_covers_the_observed_error_and_is_never_looser(seed, monkeypatch):
    rng = np.random.default_rng(500 + seed)
    fmt = ["binary32", "bfloat16"][seed % 2]
    g = _attention_graph(rng, n=int(rng.integers(2, 9)), scale=[0.5, 2.0, 8.0][seed % 3], shift=seed % 4 < 2)
    box = box_of(rng, (1, 4), Fraction(1, 16))
    cert, new = _eps(g, box, fmt)
    assert np.all(observed(g, box, fmt, n=120) <= new)
    _off(monkeypatch)
    old_cert, old = _eps(g, box, fmt)
    assert np.all(new <= old * (1 + 1e-12)), (new, old)
    for a, b in zip(cert["steps"], old_cert["steps"]):  # every node, every element
        assert all(Fraction(x) <= Fraction(y) * (1 + Fraction(1, 10 ** 12)) for x, y in zip(a, b))


def test_relational_softmax_cancels_a_row_wide_error(monkeypatch):
    """Scores x W + (x·a) on every entry: the common term's error (~u |x·a|, large) leaves softmax
    unchanged in the reals, so the relational entry's S = Σ G_j e_j takes it out (coefficient G_i
    (1 - Σ G_j), Σ G_j ≈ 1); each output's separate bound charges it: markedly tighter."""
    rng = np.random.default_rng(3)
    g = _attention_graph(rng, n=4, scale=0.5, shift=True)
    box = box_of(rng, (1, 4), Fraction(1, 64))
    _, new = _eps(g, box)
    assert np.all(observed(g, box, "binary32", n=120) <= new)
    _off(monkeypatch)
    _, old = _eps(g, box)
    assert new.max() * 1.5 < old.max(), (new, old)


def _tampered(how):
    """The entry with one part wrong: "coefficient" (e_i's coefficient G_i/2), "source" (the row's
    S = Σ G_j e_j dropped; both keep the propagation form alone, without the charged remainder
    and the rounding sources), "own" (the honest elements' whole error halved)."""
    honest = errornorm.softmax_relational
    zero = Fraction(0)

    def rule(ctx, xs, s, m, ys):
        out = honest(ctx, xs, s, m, ys)
        if out is None:
            return None
        if how == "own":
            return [ctx.make(y.lo, y.hi, [(Fraction(1, 2), zero, y)], zero, zero, y.g) for y in out]
        G = [(y.lo + y.hi) / 2 for y in ys]
        S = ctx.make(zero, zero, [(g, zero, x) for g, x in zip(G, xs)], zero, zero)
        res = []
        for x, y, g in zip(xs, ys, G):
            terms = [(g / 2, zero, x), (-g, zero, S)] if how == "coefficient" else [(g, zero, x)]
            res.append(ctx.make(y.lo, y.hi, terms, zero, zero, y.g))
        return res

    return rule


@pytest.mark.parametrize("ranges", ["ibp", "fast"])
@pytest.mark.parametrize("how", ["coefficient", "source", "own"])
def test_tampered_relational_forms_are_rejected(how, ranges, monkeypatch):
    """A certificate made with a tampered entry (its claims then below the honest replay's
    somewhere) is rejected by the honest checker, exact and fast ranges alike."""
    rng = np.random.default_rng(11)
    g = _attention_graph(rng, n=5, scale=2.0, shift=True)
    box = box_of(rng, (1, 4), Fraction(1, 16))
    honest_cert, _ = _eps(g, box, ranges=ranges)
    monkeypatch.setattr(errorbound, "softmax_relational", _tampered(how))
    bad = bound_certificate(g, box, "binary32", ranges=ranges)
    monkeypatch.undo()
    assert bad["steps"] != honest_cert["steps"]
    v = check(bad)
    assert not v.ok and "replayed" in v.reason, v.reason


def test_narrow_transformer_with_the_relational_softmax(monkeypatch):
    """The zoo's char GPT, narrow (width 16, two blocks, 2 heads, untrained), after its token
    lookup at context 3, ±0.01 around three token rows, fast ranges: the certificate replays, its
    epsilon covers the float32 error against the binary64 run on sampled points, and the
    relational softmax makes it tighter (bench/README.md, "h-tfeps": 1.66e-4 -> 1.17e-4)."""
    import torchlean as tl
    from torchlean.floats import observed_error
    from torchlean.runtime.tensor import tensor
    from torchlean.runtime.trace import trace
    from torchlean.zoo import transformer

    tl.manual_seed(0)
    gpt = transformer.CharGPT(width=16, layers=2, heads=2)
    gpt.eval()
    body = transformer.AfterLookup(gpt)
    x = gpt.tok(tl.tensor(np.arange(3)[None])).numpy().astype(np.float32)
    g = trace(body, tensor(x))
    box = [(Fraction(float(v)) - Fraction(1, 100), Fraction(float(v)) + Fraction(1, 100)) for v in x.ravel()]
    cert, eps = _eps(g, box, ranges="fast")
    assert np.all(observed_error(g, box, n=150, reference=False).max_error <= eps)
    soft = [i for i, n in enumerate(cert["statement"]["graph"]["nodes"]) if n["op"] == "softmax"]
    _off(monkeypatch)
    old_cert = bound_certificate(g, box, "binary32", ranges="fast")
    old = np.array([float(e) for e in epsilons(old_cert)])
    assert eps.max() * 1.2 < old.max(), (eps.max(), old.max())
    new_s, old_s = ([max(map(Fraction, c["steps"][k])) for k in soft] for c in (cert, old_cert))
    assert all(a <= b for a, b in zip(new_s, old_s)) and new_s[-1] * 2 < old_s[-1], (new_s, old_s)


@pytest.mark.parametrize("ranges", ["ibp", "fast"])
def test_partial_collapse_above_max_work_is_sound(ranges, monkeypatch):
    """``Ctx.make`` above its budget makes the inputs of least |m|·E their one shared source
    (``Ctx.alias``) until the rest fit (h-tfeps's partial collapse, aliased since the merge with
    h-zooeps; before, every input charged as a constant): with a tiny budget (most sums partly
    aliased) the certificate replays, covers the observed error, and lies between the full budget's
    epsilon and the former rule's, every over-budget form collapsed (a budget of 0, no aliases)."""
    from torchlean.certificates import errorctx

    rng = np.random.default_rng(21)
    g = _attention_graph(rng, n=6, scale=2.0, shift=True)
    box = box_of(rng, (1, 4), Fraction(1, 16))
    _, full = _eps(g, box, ranges=ranges)
    monkeypatch.setattr(errorctx, "NODE_WORK", 0)  # the per-element budget alone
    monkeypatch.setattr(errorctx, "MAX_WORK", 12)
    _, part = _eps(g, box, ranges=ranges)
    monkeypatch.setattr(errorctx, "MAX_WORK", 0)
    monkeypatch.setattr(errorctx.Ctx, "alias", lambda self, v: v)  # the former collapse
    _, none = _eps(g, box, ranges=ranges)
    assert np.all(observed(g, box, "binary32", n=120) <= part)
    assert np.all(full <= part * (1 + 1e-12)) and np.all(part <= none * (1 + 1e-12))
    assert part.max() < none.max()


@pytest.mark.parametrize("ranges", ["ibp", "fast"])
def test_shrunk_epsilon_and_softmax_steps_are_rejected(ranges):
    """With the relational entry active: an epsilon shrunk by 1% and the softmax node's steps
    shrunk by 1% are each rejected, exact and fast ranges alike."""
    from torchlean.certificates.core import digest

    rng = np.random.default_rng(11)
    g = _attention_graph(rng, n=5, scale=2.0, shift=True)
    cert, _ = _eps(g, box_of(rng, (1, 4), Fraction(1, 16)), ranges=ranges)
    bad = copy.deepcopy(cert)
    bad["statement"]["epsilon"] = [str(Fraction(e) * 99 / 100) for e in bad["statement"]["epsilon"]]
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok
    k = [n["op"] for n in cert["statement"]["graph"]["nodes"]].index("softmax")
    bad = copy.deepcopy(cert)
    bad["steps"][k] = [str(Fraction(e) * 99 / 100) for e in bad["steps"][k]]
    v = check(bad)
    assert not v.ok and "replayed" in v.reason
