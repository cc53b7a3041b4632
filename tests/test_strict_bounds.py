"""Issue 20, S1: strict atoms are kept, on inputs as on outputs, by both VNN-LIB readers, and a
counterexample must satisfy them strictly (the unsat replay keeps using the closed box).

The instance from the issue: ``test_tiny.onnx`` is y = relu(x); with ``X_0 > 0``, ``X_0 <= 1`` and
``Y_0 <= 0`` the unsafe set is empty (relu(x) = x > 0), yet the point X_0 = 0 used to be reported
``sat`` and accepted by ``verify check``.
"""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.bridge.vnnlib import parse_vnnlib_string
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.lower import fingerprint
from torchlean.certificates.property import parse_property
from torchlean.verify import load_spec, verify
from torchlean.verify.attack import to_float32_in_box
from torchlean.verify.table import atom_holds, confirm, load_target

TINY = Path(__file__).parent / "data" / "vnncomp2021" / "test" / "test_tiny.onnx"
HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
S1 = HEAD + "(assert (> X_0 0))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))\n"


def _write(tmp_path, text, name="p.vnnlib"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _sat_cert(net, spec, x):
    return {"kind": "vnn-sat", "network": fingerprint(net), "property": spec.digest(),
            "x": [str(v) for v in x]}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "torchlean.verify", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


# -- the readers ---------------------------------------------------------------------------------

def test_both_readers_keep_a_strict_input_bound(tmp_path):
    (r,) = parse_property(S1).regions
    assert (r.lo, r.hi, r.lo_strict, r.hi_strict) == ((0,), (1,), (True,), (False,))
    assert not r.contains([Fraction(0)]) and r.contains([Fraction(1, 2)]) and r.contains([Fraction(1)])
    (b,) = parse_vnnlib_string(S1).regions
    assert (b.lower_exact, b.upper_exact, b.lower_strict, b.upper_strict) == ((0,), (1,), (True,), (False,))
    assert not b.contains([0.0]) and b.contains([1.0])
    assert load_spec(_write(tmp_path, S1)) == parse_property(S1)  # the cross-check agrees


@pytest.mark.parametrize("atom", ["(> X_0 0)", "(< 0 X_0)", "(< (- X_0) 0)", "(> (* 2 X_0) 0)",
                                  "(< (- 0 X_0) 0)", "(> (+ X_0 1) 1)", "(< 1 (+ 1 X_0))"])
def test_every_way_of_writing_the_strict_bound(tmp_path, atom):
    text = HEAD + f"(assert {atom})\n(assert (<= X_0 1))\n(assert (<= Y_0 0))\n"
    assert load_spec(_write(tmp_path, text)).regions == parse_property(S1).regions


@pytest.mark.parametrize("bounds, lo, strict", [
    ("(>= X_0 0) (> X_0 0)", 0, True),          # a tie: the strict one wins
    ("(> X_0 0) (>= X_0 0)", 0, True),
    ("(> X_0 0) (>= X_0 -1)", 0, True),         # the tightest wins
    ("(> X_0 -1) (>= X_0 0)", 0, False),
    ("(>= X_0 0) (> X_0 0) (>= X_0 0)", 0, True),
    ("(and (> X_0 0) (>= X_0 0))", 0, True),
    ("(= X_0 0.5) (>= X_0 0)", Fraction(1, 2), False),   # equality: two closed bounds
])
def test_repeated_bounds_and_equalities(tmp_path, bounds, lo, strict):
    text = HEAD + f"(assert (and {bounds}))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))\n"
    (r,) = load_spec(_write(tmp_path, text)).regions
    assert (r.lo[0], r.strictness()[0][0]) == (lo, strict)


@pytest.mark.parametrize("box", ["(> X_0 0) (<= X_0 0)", "(>= X_0 0) (< X_0 0)", "(> X_0 0) (< X_0 0)",
                                 "(= X_0 0) (> X_0 0)", "(> X_0 1) (<= X_0 1)"])
def test_a_half_open_box_of_width_zero_is_empty(tmp_path, box):
    text = HEAD + f"(assert (or (and {box}) (and (>= X_0 2) (<= X_0 3))))\n(assert (<= Y_0 0))\n"
    (r,) = load_spec(_write(tmp_path, text)).regions  # both readers drop the empty case
    assert (r.lo, r.hi) == ((2,), (3,))


def test_strict_and_closed_boxes_are_different_regions_and_digests(tmp_path):
    closed = S1.replace("(> X_0 0)", "(>= X_0 0)")
    both = HEAD + ("(assert (or (and (> X_0 0) (<= X_0 1)) (and (>= X_0 0) (<= X_0 1))))\n"
                   "(assert (<= Y_0 0))\n")
    assert len(load_spec(_write(tmp_path, both)).regions) == 2
    assert parse_property(S1).digest() != parse_property(closed).digest()
    # a closed-box property's digest does not mention strictness (certificates stay valid)
    assert "strict" not in json.dumps(parse_property(closed).to_dict()["regions"][0]["lo"])
    assert "lo_strict" not in parse_property(closed).to_dict()["regions"][0]


def test_strict_output_atoms_and_constant_atoms(tmp_path):
    text = HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (< Y_0 0.5))\n(assert (< 0 1))\n"
    spec = load_spec(_write(tmp_path, text))
    ((atom,),) = spec.regions[0].disjuncts
    assert atom.strict and atom_holds(atom, [Fraction(1, 4)]) and not atom_holds(atom, [Fraction(1, 2)])
    (c,) = parse_vnnlib_string(text).regions[0].disjuncts[0]
    assert c.strict and not c.holds([Fraction(1, 2)])
    false = text.replace("(< 0 1)", "(< 0 0)")  # a false constant atom: no region left
    assert load_spec(_write(tmp_path, false)).regions == ()


def test_the_cross_check_compares_strictness(tmp_path, monkeypatch):
    """A reader that dropped the strict flag (the bug) is caught by the other one."""
    import torchlean.verify.network as vn

    path = _write(tmp_path, S1)
    real = vn.parse_property

    def closure(text):
        spec = real(text)
        return type(spec)(spec.n_in, spec.n_out, tuple(
            type(r)(r.lo, r.hi, r.disjuncts) for r in spec.regions))

    monkeypatch.setattr(vn, "parse_property", closure)
    with pytest.raises(vn.InputError, match="disagree"):
        vn.load_spec(path)


# -- the sat checker -----------------------------------------------------------------------------

def test_forged_sat_certificate_at_a_strict_bound_is_rejected(tmp_path):
    net, spec = load_target(TINY).bg, load_spec(_write(tmp_path, S1))
    v = check_vnn(_sat_cert(net, spec, [0]), net, spec)
    assert not v.ok and "not a counterexample" in v.reason
    # nor with any mode the certificate asks for
    assert not check_vnn(dict(_sat_cert(net, spec, [0]), mode="fast"), net, spec).ok
    assert not confirm(net, spec, [Fraction(0)])


def test_interior_points_are_still_accepted(tmp_path):
    net = load_target(TINY).bg
    spec = load_spec(_write(tmp_path, S1.replace("(<= Y_0 0)", "(<= Y_0 0.5)")))
    assert check_vnn(_sat_cert(net, spec, ["1/4"]), net, spec).ok
    assert not check_vnn(_sat_cert(net, spec, [0]), net, spec).ok     # y = 0 <= 0.5, but x = 0 is out
    upper = HEAD + "(assert (>= X_0 0))\n(assert (< X_0 1))\n(assert (>= Y_0 0.5))\n"
    upper = load_spec(_write(tmp_path, upper))
    assert check_vnn(_sat_cert(net, upper, ["0.75"]), net, upper).ok
    assert not check_vnn(_sat_cert(net, upper, [1]), net, upper).ok    # strict upper bound


# -- the search ------------------------------------------------------------------------------------

def test_rounding_into_the_box_moves_inward_past_a_strict_bound():
    (r,) = parse_property(S1).regions
    (q,) = to_float32_in_box(np.array([0.0]), r)
    assert q > 0 and q == Fraction(float(np.nextafter(np.float32(0), np.float32(1))))
    (q,) = to_float32_in_box(np.array([-1e-45]), r)  # just outside: two steps up, past 0
    assert q > 0
    (c,) = parse_property(S1.replace("(> X_0 0)", "(>= X_0 0)")).regions
    assert to_float32_in_box(np.array([0.0]), c) == [0]


def test_library_verify_never_reports_the_boundary_point(tmp_path):
    """S1 through the library: the closure's counterexample X_0 = 0 is found, recognised as
    excluded only by the strict bound, and answered ``unknown`` at once (no closed-box certificate
    exists); without the attack, branch-and-bound runs to its deadline and never says sat."""
    net, spec = load_target(TINY).bg, load_spec(_write(tmp_path, S1))
    res = verify(net, spec, timeout=20)
    assert res.verdict == "unknown" and res.cert is None and "strict" in res.stats["why"]
    assert res.stats["time"] < 10
    res = verify(net, spec, timeout=1, attack_first=False)
    assert res.verdict == "timeout" and res.cert is None


def test_closure_and_moving_inward_from_a_closure_point(tmp_path):
    from torchlean.verify.attack import closure, inward
    from torchlean.verify.network import float_chain

    net = load_target(TINY).bg
    spec = load_spec(_write(tmp_path, S1))
    shut = closure(spec)
    assert closure(shut) is None and not shut.regions[0].lo_strict
    assert confirm(net, shut, [Fraction(0)]) and not confirm(net, spec, [Fraction(0)])
    # nothing inside: x kept
    assert inward(float_chain(net), spec, lambda q: confirm(net, spec, q), [Fraction(0)]) == [Fraction(0)]
    sat = load_spec(_write(tmp_path, S1.replace("(<= Y_0 0)", "(<= Y_0 0.5)"), "sat.vnnlib"))
    (x,) = inward(float_chain(net), sat, lambda q: confirm(net, sat, q), [Fraction(0)])
    assert 0 < x <= Fraction(1, 2) and confirm(net, sat, [x])


def test_strict_unsat_instance_is_still_proved(tmp_path):
    """Strictness costs nothing when the closure is unsat too: relu(x) <= -1 never holds."""
    net, spec = load_target(TINY).bg, load_spec(_write(tmp_path, S1.replace("(<= Y_0 0)", "(< Y_0 -1)")))
    res = verify(net, spec, timeout=20)
    assert res.verdict == "unsat" and check_vnn(res.cert, net, spec).ok


def test_search_finds_a_point_just_inside_a_strict_bound(tmp_path):
    """relu(x) <= 1e-30 with x > 0: only points within 1e-30 of the strict bound are unsafe; the
    search pushes to the bound and must step inward to find one."""
    net = load_target(TINY).bg
    spec = load_spec(_write(tmp_path, S1.replace("(<= Y_0 0)", "(<= Y_0 1e-30)")))
    res = verify(net, spec, timeout=20)
    assert res.verdict == "sat" and 0 < Fraction(res.x[0]) <= Fraction("1e-30")
    assert check_vnn(res.cert, net, spec).ok


# -- the CLI ---------------------------------------------------------------------------------------

def test_cli_s1_instance_is_not_sat_and_a_forged_certificate_is_rejected(tmp_path):
    prop = _write(tmp_path, S1)
    # (the verdict, not the time: 20 s, as a loaded machine needs for the start alone)
    r = _cli(TINY, prop, "--timeout", "20", "-q", "--cert", tmp_path / "c.json")
    assert r.returncode == 0 and r.stdout.split() == ["unknown"], r.stdout + r.stderr
    assert not (tmp_path / "c.json").exists()
    net, spec = load_target(TINY).bg, load_spec(prop)
    closure = parse_property(S1.replace("> X_0", ">= X_0")).digest()  # the digest the old reader gave
    for cert in (_sat_cert(net, spec, [0]), dict(_sat_cert(net, spec, [0]), property=closure)):
        (tmp_path / "forged.json").write_text(json.dumps(cert))
        r = _cli("check", tmp_path / "forged.json", TINY, prop)
        assert r.returncode == 1 and r.stdout.startswith("rejected:"), r.stdout + r.stderr


def test_cli_strict_sat_instance_round_trip(tmp_path):
    prop = _write(tmp_path, S1.replace("(<= Y_0 0)", "(<= Y_0 0.5)"))
    r = _cli(TINY, prop, "--timeout", "20", "-q", "--cert", tmp_path / "c.json")
    assert r.returncode == 0 and r.stdout.startswith("sat"), r.stdout + r.stderr
    x0 = float(r.stdout.split("(X_0 ")[1].split(")")[0])
    assert 0 < x0 <= 0.5
    r = _cli("check", tmp_path / "c.json", TINY, prop)
    assert r.returncode == 0 and r.stdout.startswith("accepted: sat"), r.stdout + r.stderr


# -- FPCore preconditions (floats/) ------------------------------------------------------------------

def test_fpcore_strict_pre_is_kept_and_sampled_points_respect_it():
    from torchlean.floats.fpcore import to_benchmarks, topo
    from torchlean.floats.fpsample import _in_pre, observed

    (b,) = to_benchmarks("(FPCore (x y) :pre (and (< 0 x 1) (<= 0 x) (<= -1 y 1) (< y x)) (- x y))")
    assert b.box == {"x": (0, 1), "y": (-1, 1)} and b.strict == {("x", 0), ("x", 1)}
    cons = [(topo(lhs), topo(rhs)) for _, lhs, rhs in b.constraints]
    assert [op for op, _, _ in b.constraints] == ["<"]
    q = lambda x, y: {"x": Fraction(x), "y": Fraction(y)}  # noqa: E731
    assert _in_pre(b, q("1/2", "1/4"), cons)
    assert not _in_pre(b, q(0, -1), cons) and not _in_pre(b, q(1, 0), cons)  # strict box bounds
    assert not _in_pre(b, q("1/2", "1/2"), cons)  # y < x strictly
    (c,) = to_benchmarks("(FPCore (x) :pre (and (<= 0 x) (<= x 1) (< -1 x)) x)")
    assert c.strict == set()  # the tighter closed bound wins over a looser strict one
    worst, n = observed(b, n=200)
    assert n == 200 and 0 <= worst < 1e-15
