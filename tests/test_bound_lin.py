"""``bound_graph._lin``'s integer fast path for dyadic coefficients against plain Fraction
arithmetic (random forms, constants, unit coefficients, cancellations, a non-dyadic fallback)."""

from __future__ import annotations

import random
from fractions import Fraction as Q

from torchlean.certificates import bound_graph as B


def _reference(terms):
    c, t = Q(0), {}
    for q, e in terms:
        if isinstance(e, Q):
            c += q * e
            continue
        c += q * e.c
        for v, x in e.t.items():
            t[v] = t.get(v, 0) + q * x
    return c, {v: x for v, x in t.items() if x}


def _same(got, ref):
    c, t = ref
    if isinstance(got, Q):
        return not t and got == c
    return got.t == t and got.c == c


def test_dyadic_fast_path_equals_exact_arithmetic():
    rnd = random.Random(1)

    def rq(dyadic=True):
        return Q(rnd.randint(-1000, 1000), 2 ** rnd.randint(0, 60) if dyadic else rnd.randint(1, 99))

    for trial in range(400):
        dyadic = trial % 5 != 0
        terms = []
        for _ in range(rnd.randint(5, 12)):
            q = rq() if rnd.random() < 0.9 else Q(0)
            if rnd.random() < 0.3:
                e = rq(dyadic or rnd.random() < 0.5)
            else:
                e = B.Aff({rnd.randint(0, 8): B.ONE if rnd.random() < 0.3 else rq()
                           for _ in range(rnd.randint(1, 5))}, rq())
            terms.append((q, e))
        terms.append((Q(1), B.Aff({0: Q(-1)}, Q(0))))
        terms.append((Q(1), B.Aff({0: Q(1)}, Q(0))))  # a cancellation: variable 0's sum may vanish
        assert _same(B._lin(terms), _reference(terms)), trial
        fast = B._dyadic_lin(terms)
        assert fast is None or _same(fast, _reference(terms))
    assert B._dyadic_lin([(Q(1, 3), B.Aff({0: Q(1)}))] * 5) is None  # not dyadic: the Fraction path


def test_form_lincomb_fast_path_equals_exact_arithmetic():
    """``errorforms.lincomb`` (``ExactOps.dot`` per coefficient) against Fraction sums."""
    from torchlean.certificates.errorforms import ZERO, lincomb

    rnd = random.Random(3)

    def rq(dyadic=True):
        return Q(rnd.randint(-999, 999), 2 ** rnd.randint(0, 70) if dyadic else rnd.randint(1, 50))

    for t in range(500):
        n, dyadic = rnd.randint(0, 6), t % 4 != 0
        c = rq(dyadic or rnd.random() < 0.5)
        pairs = [(rq(), [rq() if rnd.random() < 0.8 else Q(0) for _ in range(n + 1)])
                 for _ in range(rnd.randint(0, 5))]
        ref = [c] + [ZERO] * n
        for q, f in pairs:  # (the naive sum, coefficient by coefficient)
            ref = [r + q * a for r, a in zip(ref, f)]
        assert lincomb(c, pairs, n) == ref, t
