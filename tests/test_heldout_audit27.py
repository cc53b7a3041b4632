"""Held-out audit 27 (issue 16's rounding-error column): holes found by an adversarial audit of the
errorbound checker, each rebuilt end to end against independent references (mpmath at 200 bits
for the real network, the runtime's own float32/bfloat16 run for the float side).

1. pow's exponent: the runtime computes ``x ** c`` with a Python float c, which numpy (NEP 50) and
   ml_dtypes cast to the array's format, so the float run is x~^fl(c); both columns charged only
   the kernel's k ulp of x~^c, reading c exactly. pow(x, 2.5000001) on [2^19, 2^20] in binary32:
   error 7.5e8 against a certified 5.4e8 (both columns).
3. Integer constants read as data were exact to the column, but an int64 array meets a float array
   as binary64 (numpy's promotion) and the node's result is rounded to the format: where(m, 2^24 + 1,
   x) in binary32 certified eps 0 where the run gives 2^24 (error 1); x * (3·2^52 + 1) in binary64
   at x = 1.3333333333333328 errs by 2.33 against a certified 2.0. Such constants must now be values
   of the format (keys read by value unchanged).
2. A statement's format is read from its parameters, but its name was never compared with them: a
   binary64 claim relabelled "binary32" (digest recomputed) was accepted by ``floats check``.
"""

from __future__ import annotations

import json
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.core import digest
from torchlean.floats import bound_certificate, epsilons
from torchlean.floats.__main__ import main as floats_main
from torchlean.runtime.execute import run_graph
from torchlean.spec import Graph, Node, Value

F = Fraction
DT = {"binary32": np.float32, "bfloat16": ml_dtypes.bfloat16}


def _pow_graph(c: float) -> Graph:
    return Graph([Value("x", (1,), "float32")], {}, [Node("pow", ["x"], "y", {"exponent": c})], ["y"]).check()


def _worst(g: Graph, c: float, box, fmt: str, n: int = 64) -> float:
    """max |runtime(fmt) - x^c| (mpmath, 200 bits) over n values of the format in the box."""
    dt = DT[fmt]
    lo, hi = float(box[0][0]), float(box[0][1])
    xs = np.unique(np.linspace(lo, hi, n).astype(dt).astype(np.float64))
    worst = mpmath.mpf(0)
    with mpmath.workprec(200):
        for x in xs[(xs >= lo) & (xs <= hi)]:
            y = float(np.asarray(run_graph(g, {"x": np.array([x]).astype(dt)}, dtype=dt)[0],
                                 dtype=np.float64).ravel()[0])
            worst = max(worst, abs(mpmath.mpf(y) - mpmath.mpf(x) ** mpmath.mpf(c)))
    return float(worst)


POW_CASES = [  # (exponent, box, format): exponents that are not values of the format
    (2.5000001, [(F(2**19), F(2**20))], "binary32"),
    (0.3, [(F(2**66), F(2**67))], "binary32"),
    (0.3, [(F(2**90), F(2**91))], "bfloat16"),
]


@pytest.mark.parametrize("column", ["exact", "fast"])
@pytest.mark.parametrize("c,box,fmt", POW_CASES)
def test_pow_charges_the_exponent_cast(c, box, fmt, column):
    g = _pow_graph(c)
    cert = bound_certificate(g, box, fmt, column=column, ranges="fast" if column == "fast" else "ibp")
    v = check(cert)
    assert v.ok, v.reason
    eps = float(epsilons(cert)[0])
    assert _worst(g, c, box, fmt) <= eps


@pytest.mark.parametrize("column", ["exact", "fast"])
def test_pow_exact_exponent_unchanged_and_sound(column):
    """An exponent that is a value of the format (1.5) has no cast: the bound is the kernel's alone
    (4 ulp, 2un = 2^-23, of |x^1.5| <= 2^30 on [2^19, 2^20]) and still covers the run."""
    g, box = _pow_graph(1.5), [(F(2**19), F(2**20))]
    cert = bound_certificate(g, box, "binary32", column=column, ranges="fast" if column == "fast" else "ibp")
    assert check(cert).ok
    eps = float(epsilons(cert)[0])
    assert _worst(g, 1.5, box, "binary32") <= eps <= 4 * 2.0**-23 * 2.0**30 * 1.01


@pytest.mark.parametrize("column", ["exact", "fast"])
@pytest.mark.parametrize("c,box,fmt", [(2049.0, [(F(-1), F(-1))], "binary16"),
                                       (17.0, [(F(-5, 4), F(-1))], "float8_e4m3fn")])
def test_pow_integer_exponent_not_in_format_refused(c, box, fmt, column):
    """2049 is not a value of binary16 (it casts to 2048), 17 not of float8_e4m3fn (16): the run
    is x~^(c - 1), of the other sign on negative x (before: at the point x = -1 the binary16 run
    gives +1, the real -1, against a certified 0.0039)."""
    g = _pow_graph(c)
    dt = {"binary16": np.float16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn}[fmt]
    y = np.asarray(run_graph(g, {"x": np.array([-1.0]).astype(dt)}, dtype=dt)[0], dtype=np.float64)
    assert y.ravel()[0] == 1.0  # (the float run's sign; (-1)^c = -1)
    with pytest.raises(Exception, match="not a value of"):
        bound_certificate(g, box, fmt, column=column, ranges="fast" if column == "fast" else "ibp")


def _relabelled(tmp_path):
    g = Graph([Value("x", (1,), "float32")], {}, [Node("mul", ["x", "x"], "y")], ["y"]).check()
    cert = bound_certificate(g, [(F(1), F(2))], "binary64", ranges="ibp")
    assert check(cert).ok
    st = dict(cert["statement"], format=dict(cert["statement"]["format"], name="binary32"))
    bad = dict(cert, statement=st, digest=digest(st))
    p = tmp_path / "relabel.json"
    p.write_text(json.dumps(bad))
    return bad, p, float(epsilons(cert)[0])


def test_format_name_must_match_its_parameters(tmp_path, capsys):
    bad, p, eps = _relabelled(tmp_path)
    # the claim is false for binary32: 1.0000001^2 in float32 errs by ~1.4e-14, eps ~4.4e-16
    x = np.float32(1.0000001)
    with mpmath.workprec(200):
        err = abs(mpmath.mpf(float(x * x)) - mpmath.mpf(float(x)) ** 2)
    assert err > eps
    v = check(bad)
    assert not v.ok and "not these parameters" in v.reason
    assert floats_main(["check", str(p)]) == 1
    assert "REJECTED" in capsys.readouterr().out


def test_format_aliases_and_custom_names_still_accepted():
    """An alias names the same parameters (float32 = binary32); an unknown name claims none."""
    g = Graph([Value("x", (1,), "float32")], {}, [Node("mul", ["x", "x"], "y")], ["y"]).check()
    cert = bound_certificate(g, [(F(1), F(2))], "binary32", ranges="ibp")
    for name in ("float32", "my-own-format"):
        st = dict(cert["statement"], format=dict(cert["statement"]["format"], name=name))
        assert check(dict(cert, statement=st, digest=digest(st))).ok
    st = dict(cert["statement"], format=dict(cert["statement"]["format"], name="bfloat16"))
    assert not check(dict(cert, statement=st, digest=digest(st))).ok


def test_format_name_with_another_exponent_range_rejected():
    """binary32's precision with binary64's exponent range (no underflow to charge) is not binary32."""
    g = Graph([Value("x", (1,), "float32")], {}, [Node("mul", ["x", "x"], "y")], ["y"]).check()
    cert = bound_certificate(g, [(F(2**-76), F(2**-76))], "e11m23", ranges="ibp")
    assert check(cert).ok
    st = dict(cert["statement"], format=dict(cert["statement"]["format"], name="binary32"))
    v = check(dict(cert, statement=st, digest=digest(st)))
    assert not v.ok and "not these parameters" in v.reason
    # the relabelled claim is false for binary32: (2^-76)^2 = 2^-152 underflows to 0 there
    x = np.float32(2.0**-76)
    assert float(x * x) == 0.0 and float(epsilons(cert)[0]) < 2.0**-152


INT_CASES = [  # (nodes, format, constant, box point): the run rounds the integer, the column did not
    ([("where", ["m", "c", "x"], "y")], "binary32", 2**24 + 1, 0.5),
    ([("maximum", ["x", "c"], "y")], "binary32", 2**24 + 1, 0.5),
    ([("concat", ["x", "c"], "y", {"axis": 1})], "binary16", 2**11 + 1, 0.5),
    ([("mul", ["x", "c"], "y")], "binary64", 3 * 2**52 + 1, 1.3333333333333328),
]


def _int_graph(nodes, c, dtype="float32"):
    return Graph([Value("x", (1, 1), dtype)], {"c": np.array([[c]], dtype=np.int64), "m": np.array([[True]])},
                 [Node(*n) for n in nodes], ["y"]).check()


@pytest.mark.parametrize("nodes,fmt,c,x", INT_CASES)
def test_integer_constant_not_in_format_refused(nodes, fmt, c, x):
    """An int64 constant read as data meets the float array as binary64 and the node's result is
    rounded to the format: where/maximum/concat output fl(c), not c (before: eps 0, error 1 in
    binary32 and binary16), and binary64's x·(3·2^52 + 1) erred by 2.33 against a certified 2.0."""
    g = _int_graph(nodes, c, "float64" if fmt == "binary64" else "float32")
    dt = {"binary32": np.float32, "binary16": np.float16, "binary64": np.float64}[fmt]
    y = np.asarray(run_graph(g, {"x": np.array([[x]]).astype(dt)}, dtype=dt)[0], dtype=np.float64).ravel()
    with mpmath.workprec(200):
        real = [mpmath.mpf(x) * c] if nodes[0][0] == "mul" else [mpmath.mpf(c)] if nodes[0][0] != "concat" \
            else [mpmath.mpf(x), mpmath.mpf(c)]
        assert max(abs(mpmath.mpf(float(a)) - b) for a, b in zip(y, real)) >= 1  # (the run's error)
    with pytest.raises(Exception, match="not one of"):
        bound_certificate(g, [(F(x), F(x))], fmt, ranges="ibp")


def test_integer_constants_of_the_format_and_keys_unchanged():
    """Integers that are values of the format are exact (the bound of the same float constant); a
    gather index read by value is never cast (index 257 in bfloat16, which has no 257)."""
    def eps(c, fmt="binary32"):
        g = Graph([Value("x", (1, 1), "float32")], {"c": c}, [Node("mul", ["x", "c"], "y")], ["y"]).check()
        return epsilons(bound_certificate(g, [(F(1), F(2))], fmt, ranges="ibp"))[0]
    assert eps(np.array([[12345]], dtype=np.int64)) == eps(np.array([[12345.0]]))
    assert eps(np.array([[2**40]], dtype=np.int64)) == eps(np.array([[2.0**40]]))
    g = _int_graph([("where", ["m", "c", "x"], "y")], 2**24)
    cert = bound_certificate(g, [(F(1, 2), F(1, 2))], "binary32", ranges="ibp")
    assert check(cert).ok and epsilons(cert)[0] == 0
    ix = np.arange(300, dtype=np.int64).reshape(1, 300) % 260
    g = Graph([Value("x", (1, 260), "float32")], {"ix": ix}, [Node("gather", ["x", "ix"], "y", {"axis": 1})],
              ["y"]).check()
    cert = bound_certificate(g, [(F(1), F(2))] * 260, "bfloat16", ranges="ibp")
    assert check(cert).ok and max(epsilons(cert)) == 0


@pytest.mark.parametrize("column", ["exact", "fast"])
def test_input_exact_must_be_a_bool(column):
    """"input_exact": "false" (a string, truthy) was read as exact inputs: eps 0 for -x at the point
    0.1, where the run on fl(0.1) errs by 1.5e-9; the honest false claim charges the rounding."""
    g = Graph([Value("x", (1,), "float32")], {}, [Node("neg", ["x"], "y")], ["y"]).check()
    kw = {"column": column, "ranges": "fast" if column == "fast" else "ibp"}
    box = [(F(1, 10), F(1, 10))]
    cert = bound_certificate(g, box, "binary32", input_exact=True, **kw)
    for bad in ("false", 0, None):
        st = dict(cert["statement"], input_exact=bad)
        v = check(dict(cert, statement=st, digest=digest(st)))
        assert not v.ok and "input_exact" in v.reason
    honest = bound_certificate(g, box, "binary32", input_exact=False, **kw)
    assert check(honest).ok
    err = abs(F(float(-np.float32(0.1))) - F(-1, 10))
    assert 0 < err <= epsilons(honest)[0]


def test_a_huge_integer_exponent_is_refused_within_its_deadline():
    """audit27 noticed: pow with exponent 2^53 + 1 (a value of binary64) on a box near -1 made the
    exact column square (3/2) 53 times in exact rationals, past any deadline (a big-integer product
    holds the interpreter: no watchdog runs). The lowering now refuses |n| > ``MAX_IPOW`` and
    ``functions._pow`` (the pow row itself) a power past ``POW_BITS`` bits, each in one line; at
    the points -1, 0, 1 the row still computes, and ordinary exponents are unchanged."""
    import time

    from torchlean.certificates.functions import FUNCTIONS, POW_BITS

    c = float(2**53 + 1)
    g = _pow_graph(c)
    t = time.monotonic()
    for column in ("exact", "fast"):
        with pytest.raises(Exception, match="beyond 4096"):
            bound_certificate(g, [(F(-3, 2), F(-1))], "binary64", column=column,
                              ranges="ibp" if column == "exact" else "fast")
    with pytest.raises(Exception, match="too large to compute exactly"):
        FUNCTIONS["pow"].interval(F(-3, 2), F(-1), exponent=2**53 + 1)
    assert time.monotonic() - t < 30
    assert FUNCTIONS["pow"].interval(F(-1), F(-1), exponent=2**53 + 1) == (F(-1), F(-1))
    assert FUNCTIONS["pow"].interval(F(-3, 2), F(-1), exponent=3) == (F(-27, 8), F(-1))
    big = POW_BITS // 64  # (3/2)^n well under the limit: computed
    lo, hi = FUNCTIONS["pow"].interval(F(3, 2), F(3, 2), exponent=big)
    assert lo <= F(3, 2) ** big <= hi
    g = _pow_graph(4096.0)  # the largest lowered exponent: bounded, and sound at the box's ends
    cert = bound_certificate(g, [(F(-10001, 10000), F(-1))], "binary64", column="exact", ranges="ibp")
    assert check(cert).ok
