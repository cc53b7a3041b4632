"""audit12: the trusted checker's latest changes, attacked (87e32a5 one lexical layer ``sexpr.lex``;
8210871 + 2ded2fc each VNN-LIB atom read once and a case's box compared with the last case's;
7bb175a ``lower_linear.out_size`` shared by the lowering and ``fast_forms.conv_kernel``).

References, independent of both VNN-LIB readers: z3's SMT-LIB parser (``z3.parse_smt2_string``
raises on any error; the z3 binary reports it and drops the command), the SMT-LIB 2.6 reference
lexer of ``tests/test_heldout_audit10.py``, z3's equivalence of the file's formula with the
checker's ``Spec`` (every region's box and disjuncts, strictness included), torch's conv2d.

Found and fixed (trusted, ``certificates/property.py`` and ``sexpr.py``): files both VNN-LIB
readers read one way but SMT-LIB refuses (z3 reports an error and drops the command, so the
solver's unsafe set is larger), each of which answered a checked ``unsat`` on y = x over [0, 1]
where the SMT-LIB reading is ``sat`` (``test_cli_refuses_what_smtlib_reads_otherwise``):
- an output used by an assert before its ``declare-const`` (both readers collect declarations first);
- a form feed (or any character that is not printable ASCII) ending a numeral, ``-1\\f``: the new
  lexer keeps it in the atom (SMT-LIB's white space is 4 characters) and ``core.decimal``'s
  ``strip()`` dropped it; the lark grammar took \\f as white space (both fixed);
- numerals outside VNN-LIB's ``[+-]digits[.digits][e[+-]digits]`` that ``decimal`` reads
  (``1/2``, ``1_000``): the lark reader refused them, the trusted one alone did not.
Also refused now, no wrong verdict before: a second declaration, ``(+)`` and a command whose head is
a list (an ``IndexError``/``TypeError``: "internal error", exit 3). The lark grammar's comments end
at CR too (SMT-LIB's rule), so both readers agree with SMT-LIB on the CR-in-comment variant.

Tried, no hole (the reading is SMT-LIB's, by z3's equivalence): DNF cases interleaved A B A,
equal boxes with different outputs, equal outputs with different boxes, boxes equal in value but
not in strictness, boxes made equal by different atoms, a shared bound tightened in one case only,
empty and false cases between equal ones, case order permuted, 300 random files; the Spec digests
of the repository's properties equal the pre-8210871 reader's (pinned below). Convolutions: the
output length agrees with torch on every small geometry (empty outputs included), the lowering's
matrix is torch's on odd strides/pads/dilations/groups, and every hint with the same matrix shape
over a grid of geometries is refused by ``conv_kernel`` or describes the same matrix exactly.

Also fixed: an obligation's numeral (``poly.numeral``) is SMT-LIB's digits[.digits]; ``1e5``,
``1/2``, ``1_000`` were read through ``decimal`` (z3 reads ``1e5`` as 1 and a symbol).

Planted bugs this file catches (each made in a scratch copy, the file run; tests failing):
- ``parse_property`` comparing a case's box with the last one's lower bounds only (6);
- its atom memo keyed by the atom's line instead of the atom (12);
- the strict flags left out of the box key (after the first case) (2);
- ``sexpr.lex`` without its printable-ASCII test (1: the obligation test; the property reader's
  numeral syntax refuses ``-1\f`` by itself);
- ``_term`` without its declaration-order test (3, the CLI test among them);
- ``out_size`` one too large for strides above 1, in the lowering and ``conv_kernel`` alike (6).
"""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.core import Rejected
from torchlean.certificates.property import PropertyError, parse_property
from torchlean.verify.network import InputError, _bridge_spec, _canon

z3 = pytest.importorskip("z3")

HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"


def _lark(text: str):
    """The lark reader's canonical reading, or None where it refuses."""
    try:
        return _bridge_spec(Path("p.vnnlib"), text)
    except InputError:
        return None


def _z3_reads(text: str) -> bool:
    try:
        z3.parse_smt2_string(text)
    except z3.Z3Exception:
        return False
    return True


# -- 1. files both readers read alike that SMT-LIB reads otherwise (or refuses) ------------------------

#: name -> text; SMT-LIB (z3) refuses each. The trusted reader must refuse it too (so must ``verify``)
NOT_SMTLIB = {
    "use_before_declaration": "(declare-const X_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
                              "(assert (<= Y_0 -1))\n(declare-const Y_0 Real)\n(assert (<= Y_0 5))\n",
    "input_used_before_declaration": "(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
                                     "(declare-const X_0 Real)\n(assert (<= X_0 1))\n",
    "declared_twice": HEAD + "(declare-const Y_0 Real)\n(assert (<= Y_0 5))\n",
    "form_feed_after_numeral": HEAD + "(assert (<= Y_0 -1\f))\n(assert (<= Y_0 5))\n",
    "vertical_tab_after_numeral": HEAD + "(assert (<= Y_0 -1\v))\n",
    "nbsp_after_numeral": HEAD + "(assert (<= Y_0 -1\u00a0))\n",
    "file_separator_after_numeral": HEAD + "(assert (<= Y_0 -1\x1c))\n",
    "nel_after_numeral": HEAD + "(assert (<= Y_0 -1\x85))\n",
    "line_separator_after_numeral": HEAD + "(assert (<= Y_0 -1\u2028))\n",
    "nul_after_numeral": HEAD + "(assert (<= Y_0 -1\x00))\n",
    "form_feed_between_tokens": HEAD + "(assert\f(<= Y_0 -1))\n",
    "form_feed_after_symbol": HEAD + "(assert (<= Y_0\f -1))\n",
    "fraction_numeral": HEAD + "(assert (<= Y_0 -1/2))\n",
    "underscore_numeral": HEAD + "(assert (<= Y_0 1_000))\n",
    "hex_numeral": HEAD + "(assert (<= Y_0 #x10))\n",
    "c_hex_numeral": HEAD + "(assert (<= Y_0 0x10))\n",
    "arabic_digit": HEAD + "(assert (<= Y_0 \u0661))\n",
    "list_head": HEAD + "((assert (<= Y_0 1)))\n",
    "empty_plus": HEAD + "(assert (<= Y_0 (+)))\n",
    "empty_or": HEAD + "(assert (or))\n",  # (read as false: the whole file unsat, z3 drops it)
    "empty_and": HEAD + "(assert (and))\n",
    "assert_without_formula": HEAD + "(assert)\n",
}


@pytest.mark.parametrize("name", sorted(NOT_SMTLIB))
def test_what_smtlib_refuses_is_refused(name):
    """z3 refuses each file; the trusted reader refuses it with a ``PropertyError`` (never another
    exception: that was "internal error"), and ``verify`` then refuses it whatever lark reads."""
    text = NOT_SMTLIB[name]
    assert not _z3_reads(text)
    with pytest.raises(PropertyError):
        parse_property(text)


def test_vnnlib_numeral_conventions_still_read():
    """The VNN-LIB conventions outside strict SMT-LIB that both readers take (VNN-COMP files use
    them): ``-0.5``, ``+2``, ``.5``, ``5.``, ``1e-1``, ``2E1``; the same reading by both, and
    z3's reading of the SMT-LIB spelling of each value."""
    for tok, smt in (("-0.5", "(- 0.5)"), ("+2", "2.0"), (".5", "0.5"), ("5.", "5.0"),
                     ("1e-1", "0.1"), ("2E1", "20.0"), ("-1.25e+1", "(- 12.5)")):
        spec = parse_property(HEAD + f"(assert (<= Y_0 {tok}))\n")
        ref = parse_property(HEAD + f"(assert (<= Y_0 {smt}))\n")
        assert spec == ref and _lark(HEAD + f"(assert (<= Y_0 {tok}))\n") == _canon(spec)
        assert _equivalent(HEAD + f"(assert (<= Y_0 {smt}))\n", spec)


def test_declarations_before_use_in_any_order_still_read():
    """Declarations interleaved with asserts, each before its first use: read, as SMT-LIB reads them."""
    text = ("(declare-const X_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
            "(declare-const Y_0 Real)\n(assert (<= Y_0 -1))\n(declare-const X_1 Real)\n"
            "(assert (and (>= X_1 0) (<= X_1 2)))\n")
    spec = parse_property(text)
    assert (spec.n_in, spec.n_out) == (2, 1) and _equivalent(text, spec)


def test_obligation_reader_refuses_atoms_outside_printable_ascii():
    """The same lexical layer reads obligations (``proofs check``'s statements): a form feed in an
    atom is refused there too; a form feed in a comment is not an atom."""
    from torchlean.certificates.sexpr import read_script

    script = "(declare-const x Real)\n(assert (! (< x 0{}) :named goal))\n(check-sat)\n"
    for bad in ("\f", "\u00a0", "\x00"):
        with pytest.raises(Rejected, match="printable ASCII"):
            read_script(script.format(bad))
    assert [n for n, _ in read_script("; a \f comment\n" + script.format("")).asserts] == ["goal"]


def test_obligation_numerals_are_smtlib_s():
    """An obligation's numerals (``poly.numeral``) are SMT-LIB's numerals and decimals, read as z3
    reads them; what z3 refuses (``1e5`` is 1 then the symbol e5; ``1/2``, ``1_000``, ``0x10``)
    is refused, where ``decimal`` alone read a number. (The obligation writers emit integers.)"""
    from torchlean.certificates.poly import numeral

    for tok in ("15", "1.5", "0.25", "0"):
        (eq,) = z3.parse_smt2_string(f"(declare-const x Real)(assert (= x {tok}))")
        assert numeral(tok) == Fraction(str(z3.simplify(eq.arg(1)).as_fraction()))
    for tok in ("1e5", "1/2", "1_000", "0x10", "2E3"):
        assert not _z3_reads(f"(declare-const x Real)(assert (= x {tok}))")
        with pytest.raises(Rejected, match="bad numeral"):
            numeral(tok)
    assert numeral("x1") is None


def _identity_net(tmp_path: Path) -> Path:
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 1])], ("y",),
               [("w", np.ones((1, 1), np.float32))], 13, TensorProto.FLOAT)
    net = tmp_path / "id.onnx"
    net.write_bytes(m.SerializeToString())
    return net


@pytest.mark.parametrize("name", ["use_before_declaration", "form_feed_after_numeral"])
def test_cli_refuses_what_smtlib_reads_otherwise(tmp_path, capsys, name):
    """End to end, the holes: y = x on [0, 1] and the unsafe set Y_0 <= -1 and Y_0 <= 5. SMT-LIB
    (z3) reports the Y_0 <= -1 assert as an error and drops it, so its query is sat (x = 0); main
    read it and answered a checked "unsat". Now refused (exit 2); the file with the declaration
    first, or without the form feed, is the SMT-LIB query with both asserts: unsat, checked."""
    from tests.test_heldout_audit10 import _cli

    net = _identity_net(tmp_path)
    text = NOT_SMTLIB[name]
    dropped = text.replace("(assert (<= Y_0 -1))\n", "").replace("(assert (<= Y_0 -1\f))\n", "")
    solver = z3.Solver()
    solver.add(*z3.parse_smt2_string(dropped), z3.Real("Y_0") == z3.Real("X_0"))
    assert solver.check() == z3.sat  # (what a solver reading the file answers)
    prop = tmp_path / "p.vnnlib"
    prop.write_bytes(text.encode())
    code, stdout, err = _cli(capsys, net, prop, "--timeout", "30")
    assert code == 2 and stdout == "", (code, stdout, err)
    fixed = tmp_path / "fixed.vnnlib"
    fixed.write_bytes((HEAD + "(assert (<= Y_0 -1))\n(assert (<= Y_0 5))\n").encode())
    code, stdout, _ = _cli(capsys, net, fixed, "--timeout", "30")
    assert code == 0 and stdout.split()[0] == "unsat"
    cert = tmp_path / "sat.json"  # (the solver's counterexample is refused too, not judged)
    cert.write_text(json.dumps({"kind": "vnn-sat", "version": 1, "network": "x", "property": "y",
                                "x": ["0"]}))
    assert _cli(capsys, "check", cert, net, prop)[0] == 2


def test_lark_comments_and_white_space_are_smtlib_s():
    """The lark reader (untrusted, cross-checked) now ends a comment at CR as SMT-LIB does, and
    takes no form feed as white space: its reading of the CR variant is the reference lexer's."""
    from tests.test_heldout_audit10 import VARIANTS, _meaning

    text, _ = VARIANTS["cr_in_comment"]
    assert _lark(text) == _canon(parse_property(_meaning(text)))
    assert _lark(text) != _canon(parse_property(HEAD + "(assert (<= Y_0 5))\n"))  # (was: dropped)
    assert _lark(HEAD + "(assert (<= Y_0 -1\f))\n") is None
    assert _lark(HEAD + "(assert (<= Y_0 -1))\f\n") is None
    crlf = (HEAD + "; c\n(assert (<= Y_0 -1))\n").replace("\n", "\r\n")
    assert _lark(crlf) == _canon(parse_property(crlf)) == _canon(parse_property(_meaning(crlf)))


# -- 2. DNF cases and regions (8210871, 2ded2fc) against z3's reading of the file ---------------------

def _spec_formula(spec):
    """The checker's unsafe set as a z3 formula: OR over regions (box AND OR over disjuncts)."""
    xs = [z3.Real(f"X_{i}") for i in range(spec.n_in)]
    ys = [z3.Real(f"Y_{j}") for j in range(spec.n_out)]
    q = lambda v: z3.RealVal(f"{v.numerator}/{v.denominator}")  # noqa: E731
    out = []
    for r in spec.regions:
        ls, hs = r.strictness()
        box = [(q(lo) < x if sl else q(lo) <= x) for lo, x, sl in zip(r.lo, xs, ls)]
        box += [(x < q(hi) if sh else x <= q(hi)) for hi, x, sh in zip(r.hi, xs, hs)]
        dis = []
        for d in r.disjuncts:
            atoms = []
            for t in d:
                val = z3.Sum([q(a) * y for a, y in zip(t.a, ys) if a] + [z3.RealVal(0)])
                atoms.append(val < q(t.b) if t.strict else val <= q(t.b))
            dis.append(z3.And(atoms))
        out.append(z3.And(box + [z3.Or(dis)]))
    return z3.Or(out)


def _equivalent(text: str, spec) -> bool:
    """Does z3's reading of ``text`` (its asserts' conjunction) define the same set as ``spec``?"""
    asserted = z3.And(list(z3.parse_smt2_string(text)))
    s = z3.Solver()
    s.add(asserted != _spec_formula(spec))
    return s.check() == z3.unsat


H2 = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1"))
BOX2 = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 (- 1)))\n(assert (<= X_1 1))\n"

#: name -> (text, number of regions, disjuncts per region in order)
CASES = {
    # A B A: the third case returns to the first box; its outputs join the first region only
    "interleaved_ABA": (H2 + BOX2 + "(assert (or (and (>= Y_0 1)) (and (<= X_0 0.5) (>= Y_1 2))"
                        " (and (>= Y_0 3) (<= Y_1 0))))\n", 2, [2, 1]),
    # A B A B with the second box reached through different atoms each time
    "interleaved_ABAB": (H2 + BOX2 + "(assert (or (and (>= Y_0 1)) (and (<= X_0 0.5) (>= Y_1 2))"
                         " (and (>= Y_0 3)) (and (<= (* 2 X_0) 1) (<= X_0 0.75) (>= Y_1 4))))\n",
                         2, [2, 2]),
    # equal boxes, different outputs: one region, each case's own disjunct
    "same_box_other_outputs": (H2 + BOX2 + "(assert (or (and (<= X_0 2) (>= Y_0 1))"
                               " (and (<= X_0 3) (<= Y_0 (- 1)) (>= Y_1 5))))\n", 1, [2]),
    # equal outputs, different boxes: two regions
    "same_outputs_other_box": (H2 + BOX2 + "(assert (or (and (<= X_1 0) (>= Y_0 1))"
                               " (and (>= X_1 0) (>= Y_0 1))))\n", 2, [1, 1]),
    # the same values, one bound strict: two regions, never merged
    "strictness_differs": (H2 + BOX2 + "(assert (or (and (>= Y_0 1)) (and (< X_0 1) (>= Y_0 2))"
                           " (and (>= Y_0 3))))\n", 2, [2, 1]),
    # a strict bound and the same bound non-strict in one case: strict wins, whatever the order
    "strict_tie_both_orders": (H2 + "(assert (or (and (< X_0 1) (<= X_0 1) (>= X_0 0) (>= X_1 0)"
                               " (<= X_1 1) (>= Y_0 1)) (and (<= X_0 1) (< X_0 1) (>= X_0 0)"
                               " (>= X_1 0) (<= X_1 1) (>= Y_0 2))))\n", 1, [2]),
    # an empty box and a false constant case between two cases of one box
    "empty_cases_between": (H2 + BOX2 + "(assert (or (and (>= Y_0 1)) (and (>= X_0 2) (>= Y_0 2))"
                            " (and (<= 1 0) (>= Y_0 4)) (and (< X_1 (- 1)) (>= Y_1 9)) (and (>= Y_1 3))))\n",
                            1, [2]),
    # cases from two or-asserts crossed (2 x 3), the shared box tightened by one factor
    "crossed_asserts": (H2 + BOX2 + "(assert (or (and (<= X_0 0.5)) (and (>= X_0 0.5))))\n"
                        "(assert (or (and (>= Y_0 1)) (and (>= Y_1 1) (<= X_1 0)) (and (>= Y_0 Y_1))))\n",
                        4, [2, 1, 2, 1]),
    # one atom object shared by every case (the box) and a repeated atom text in one case
    "repeated_atoms": (H2 + BOX2 + "(assert (or (and (>= Y_0 1) (>= Y_0 1)) (and (>= Y_0 1))))\n",
                       1, [2]),
    # equality atoms on outputs (two non-strict atoms) and an input pinned by =
    "equalities": (H2 + "(assert (= X_0 0.5))\n(assert (and (>= X_1 0) (<= X_1 1)))\n"
                   "(assert (or (and (= Y_0 Y_1)) (and (= X_1 0) (>= Y_0 1))))\n", 2, [1, 1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cases_and_regions_are_smtlib_s(name):
    """Each file's Spec defines exactly z3's set (strictness included), has the stated regions in
    order of first occurrence, and the same reading reversed (disjunct order permuted); the lark
    reader agrees."""
    text, n_regions, per = CASES[name]
    spec = parse_property(text)
    assert _equivalent(text, spec)
    assert [len(r.disjuncts) for r in spec.regions] == per and len(spec.regions) == n_regions
    assert _lark(text) == _canon(spec)
    # the or's cases reversed: the same set, the same regions as a set
    last = text.rstrip().rsplit("(assert (or ", 1)
    body = last[1][:-2]
    parts, depth, cur = [], 0, ""
    for ch in body:
        cur += ch
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and cur.strip():
            parts.append(cur.strip())
            cur = ""
    rev = last[0] + "(assert (or " + " ".join(reversed(parts)) + "))\n"
    spec_r = parse_property(rev)
    assert _equivalent(rev, spec_r) and _canon(spec_r) == _canon(spec)


def _random_file(rng) -> str:
    """Two inputs, two outputs, a base box, then 1-3 or-asserts whose cases mix input bounds
    (strict or not, often equal in value, so that boxes coincide) and output atoms."""
    cons = ["0", "0.5", "1", "(- 0.5)", "0.25"]
    lines = [f"(declare-const {v} Real)" for v in ("X_0", "X_1", "Y_0", "Y_1")]
    lines += ["(assert (>= X_0 (- 1)))", "(assert (<= X_0 1))", "(assert (and (>= X_1 (- 1)) (<= X_1 1)))"]

    def atom(inputs: bool) -> str:
        op = ["<=", ">=", "<", ">", "="][int(rng.integers(5 if not inputs else 4))]
        c = cons[int(rng.integers(len(cons)))]
        if inputs:
            v = f"X_{int(rng.integers(2))}"
            lhs = v if rng.random() < 0.7 else f"(* 2 {v})"
        else:
            lhs = ["Y_0", "Y_1", "(- Y_0 Y_1)", "(+ Y_0 (* 0.5 Y_1))"][int(rng.integers(4))]
        return f"({op} {lhs} {c})" if rng.random() < 0.8 else f"({op} {c} {lhs})"

    shared = [atom(True) for _ in range(2)]  # (the same text in several cases)
    for _ in range(int(rng.integers(1, 4))):
        cases = []
        for _ in range(int(rng.integers(1, 5))):
            k = [shared[int(rng.integers(2))] for _ in range(int(rng.integers(0, 2)))]
            k += [atom(True) for _ in range(int(rng.integers(0, 2)))]
            k += [atom(False) for _ in range(int(rng.integers(0, 3)))]
            rng.shuffle(k)
            cases.append("(and " + " ".join(k) + ")" if k else "(and (<= 0 1))")
        lines.append("(assert (or " + " ".join(cases) + "))" if len(cases) > 1 else f"(assert {cases[0]})")
    return "\n".join(lines) + "\n"


def test_random_files_read_as_z3_reads_them():
    """300 random files: every one read (none refused) defines z3's set, and lark reads the same."""
    rng = np.random.default_rng(12)
    regions = 0
    for _ in range(300):
        text = _random_file(rng)
        spec = parse_property(text)
        assert _equivalent(text, spec), text
        assert _lark(text) == _canon(spec), text
        regions += len(spec.regions)
    assert regions > 600  # (several regions per file on average: the merging is exercised)


#: Spec digests of the repository's properties by the reader before 8210871 (git show
#: 8210871^:torchlean/certificates/property.py), the lexical layer and the memo not yet there
PINNED = json.loads((Path(__file__).parent / "data" / "audit12_digests.json").read_text())


def test_repository_properties_keep_the_old_readers_digests():
    data = Path(__file__).parent / "data"
    seen = 0
    for rel, d in sorted(PINNED.items()):
        assert parse_property((data / rel).read_text(encoding="utf-8")).digest() == d, rel
        seen += 1
    assert seen >= 20


# -- 3. a convolution's output length (7bb175a) ---------------------------------------------------

def test_out_size_is_torch_s_on_every_small_geometry():
    """``out_size`` against torch's conv2d output length (h 1..6, k 1..4, s 1..3, p 0..3, d 1..3):
    equal where torch gives an output; below 1 where torch refuses (the lowering's importer and
    ``conv_kernel`` then refuse: no Tensor of negative shape)."""
    torch = pytest.importorskip("torch")
    from torchlean.certificates.lower_linear import out_size

    checked = refused = 0
    for h, k, s, p, d in itertools.product(range(1, 7), range(1, 5), range(1, 4), range(0, 4), range(1, 4)):
        x, w = torch.zeros(1, 1, h, 1), torch.zeros(1, 1, k, 1)
        try:
            got = torch.nn.functional.conv2d(x, w, stride=(s, 1), padding=(p, 0), dilation=(d, 1)).shape[2]
        except RuntimeError:
            assert out_size(h, k, s, p, d) < 1, (h, k, s, p, d)
            refused += 1
            continue
        assert out_size(h, k, s, p, d) == got, (h, k, s, p, d)
        checked += 1
    assert checked > 500 and refused > 50


GEOMS = [  # (C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g): odd strides, pads past the kernel, ...
    (1, 5, 4, 2, 3, 2, 2, 3, 1, 0, 1, 1, 1), (2, 4, 4, 2, 2, 2, 3, 3, 2, 2, 1, 1, 2),
    (1, 7, 3, 1, 3, 1, 2, 1, 0, 0, 3, 1, 1), (2, 3, 5, 4, 1, 3, 1, 2, 3, 1, 1, 2, 2),
    (3, 4, 4, 3, 2, 2, 1, 1, 0, 0, 3, 3, 3), (1, 2, 2, 1, 2, 2, 5, 5, 1, 1, 1, 1, 1),
    (1, 6, 1, 2, 4, 1, 1, 1, 0, 0, 1, 1, 1), (2, 5, 5, 2, 3, 3, 2, 2, 4, 4, 2, 2, 1),
]


def _torch_matrix(geom, K):
    import torch

    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    n = C * H * W
    basis = torch.eye(n, dtype=torch.float64).reshape(n, C, H, W)
    return torch.nn.functional.conv2d(basis, torch.tensor(K), stride=(sh, sw), padding=(ph, pw),
                                      dilation=(dh, dw), groups=g).reshape(n, -1).T.numpy().copy()


@pytest.mark.parametrize("geom", GEOMS)
def test_lowered_conv_is_torch_s_and_its_hint_checks(geom):
    """The lowering's conv2d (``lower_linear._conv2d``) on plain input variables: its shape and
    every coefficient equal torch's matrix (integer kernel: exact); its hint is ``geom`` and
    ``conv_kernel`` accepts it, giving back a kernel of the same matrix."""
    pytest.importorskip("torch")
    from torchlean.certificates.bound_graph import ONE, Aff, Lowerer, Tensor
    from torchlean.certificates.fast_forms import conv_kernel
    from torchlean.certificates.lower_linear import _conv2d

    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    rng = np.random.default_rng(sum(geom))
    K = rng.integers(-3, 4, size=(O, C // g, kh, kw)).astype(float)
    K[0, 0, 0, 0] = 1.0
    D = _torch_matrix(geom, K)
    n = C * H * W
    L = Lowerer(n)
    x = Tensor((1, C, H, W), [Aff({i: ONE}) for i in range(n)])
    w = Tensor(K.shape, [Fraction(int(v)) for v in K.ravel()])
    out = _conv2d(L, [x, w], {"stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw), "groups": g})
    assert len(out.v) == D.shape[0] and out.shape[2] * out.shape[3] * O == D.shape[0]
    M = np.zeros_like(D)
    for r, e in enumerate(out.v):
        if isinstance(e, Aff):
            assert e.c == 0
            for v, a in e.t.items():
                M[r, v] = float(a)
    assert (M == D).all()
    assert L.conv_hints == {geom}
    rows, cols = np.nonzero(D)
    Kc = conv_kernel(*D.shape, rows, cols, D[rows, cols], geom)
    assert Kc is not None and (_torch_matrix(geom, Kc) == D).all()  # (offsets never on the input: 0)


def _hints_of_shape(R: int, n: int):
    """Every geometry (kernels 1..3, strides 1..3, pads 0..3, dilations 1..3 per axis; C·H·W = n;
    O 1..4, groups 1..3) whose convolution matrix is (R, n)."""
    from torchlean.certificates.lower_linear import out_size

    axis = list(itertools.product(range(1, 4), range(1, 4), range(0, 4), range(1, 4)))  # (k, s, p, d)
    shapes = [(c, h, w) for c in range(1, n + 1) for h in range(1, n + 1) for w in range(1, n + 1)
              if c * h * w == n]
    for (c, h, w), o, g in itertools.product(shapes, range(1, 5), range(1, 4)):
        if c % g or o % g or R % o:
            continue
        by_len: dict[int, list] = {}
        for a in axis:
            by_len.setdefault(out_size(w, *a), []).append(a)
        for k1, s1, p1, d1 in axis:
            ho = out_size(h, k1, s1, p1, d1)
            if ho >= 1 and (R // o) % ho == 0:
                for k2, s2, p2, d2 in by_len.get(R // o // ho, []):
                    yield (c, h, w, o, k1, k2, s1, s2, p1, p2, d1, d2, g)


@pytest.mark.parametrize("geom", GEOMS[:5])
def test_no_other_hint_of_the_same_shape_passes_for_another_matrix(geom):
    """Every geometry over a grid (strides 1..3, pads 0..3, dilations 1..3, kernels 1..3, C/O/g
    and H/W as factorisations) whose matrix shape is the true one's: ``conv_kernel`` refuses it,
    or its ``_Conv`` products are the true matrix's exactly (identity rows: exact products)."""
    pytest.importorskip("torch")
    from torchlean.certificates.fast_forms import _Conv, conv_kernel

    rng = np.random.default_rng(7 + sum(geom))
    C, H, W, O, kh, kw, *_ = geom
    K = rng.integers(-3, 4, size=(O, C // geom[12], kh, kw)).astype(float)
    K[K == 0] = 1.0
    D = _torch_matrix(geom, K)
    R, n = D.shape
    rows, cols = np.nonzero(D)
    vals = D[rows, cols]
    tried = passed = 0
    for hint in _hints_of_shape(R, n):
        tried += 1
        Kh = conv_kernel(R, n, rows, cols, vals, hint)
        if Kh is None:
            continue
        passed += 1
        conv = _Conv(hint, Kh)
        assert (conv.rmul(np.eye(n)) == D.T).all(), hint
        assert (conv.lmul(np.eye(R)) == D).all(), hint
    assert tried > 20 and passed >= 1, (tried, passed)
