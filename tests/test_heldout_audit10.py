"""h-audit10: the root check's accepted replay (h-rootcheck) and the trusted VNN-LIB reader's
skipped commands (2ff06ed), attacked.

1. The root check (``table.root_check``): a relu-first search first has the checker replay the
   root-only certificate; accepted, the CLI and ``verify run`` take that replay
   (``table.replay_result``) instead of their own. Tried here on a 70-input ReLU MLP (the
   relu-first search with the root check; at eps 0.04 root CROWN proves every disjunct, at 0.095
   it does not and the search splits ReLUs, at 0.2 there is a counterexample): a certificate
   altered after the accepted replay (in the search's own entries, or in the result), a result of
   another network or property, another replay mode, a rejected or timed-out or raising root
   replay, a rejected root check followed by a sat or by a search that runs out of time, the
   ``keep=`` memo handed back by ``check_vnn`` reused for a later replay (poisoned with a state of
   another box under the real key, other properties, exact mode), and ``verify check`` on every
   certificate the CLI would not accept. Each gets a replay of its own, a rejection, or no verdict.
2. The trusted VNN-LIB reader (``certificates/property.py``): since 2ff06ed it skips
   ``(set-info ...)``, ``(set-logic ...)``, ``(check-sat)``, ``(exit)``, whose atoms may be SMT-LIB
   string literals or quoted symbols, which its tokenizer did not know. Found and fixed (see
   TRUST_BOUNDARIES.md): a string holding " ;" hid the next assert behind a comment, a string
   spanning lines made an assert of its text, ``;`` inside a token started no comment, a carriage
   return inside a comment ended it for SMT-LIB but for neither reader (both dropped the next
   assert: the CLI answered a checked false ``sat``, ``test_a_carriage_return_in_a_comment...``),
   and both readers read asserts after ``(check-sat)``/``(exit)``. Each variant is now refused.
3. The obligation reader (``certificates/sexpr.py``, a refutation certificate's statement) refused
   atoms starting with '"' or '|' but not ``a"``, which opens an SMT-LIB string: an assert inside
   the string was part of the statement it checked. Fixed: refused anywhere in an atom.
4. 300 random property files with that noise between their commands against a reference lexer
   written from the SMT-LIB 2.6 lexicon in this file: every file the trusted reader accepts (118
   of them, 39 with noise) reads as the query SMT-LIB forms; main's reader (2ff06ed) fails it.

Planted bugs this file catches (each made by hand, the file run, the change reverted):
- ``table.checked_by_search`` without its text comparison: the altered certificates are reported
  checked (``test_a_certificate_altered_after_the_accepted_replay_is_replayed``, both tests).
- ``graph_vnn.check_vnn_graph`` reading its memo from ``keep`` (``states = keep.setdefault(...)``):
  the poisoned state proves a false certificate (``test_keep_is_never_read...``).
- ``table.replay_result`` without its network/property/mode test: another network's accepted
  replay stands for this one (``test_a_result_of_another_network...``).
- ``property._parse_sexprs`` without its token test or its carriage-return test: the string and
  comment variants are read (``test_smtlib_lexing_variants...``, the CLI test answers ``sat``).
- ``sexpr.tokenize`` testing only an atom's first character (as before): the string opened by
  ``a"`` is read as structure (``test_obligation_reader_refuses...``).
- ``parse_property`` without the ``ended`` test: asserts and a declaration after ``(check-sat)`` or
  ``(exit)`` are read (``test_smtlib_lexing_variants...[assert_after_*, declare_after_exit]``).
"""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.core import Verdict
from torchlean.certificates.property import PropertyError, parse_property
from torchlean.verify import general, graph_relu, table
from torchlean.verify.network import InputError, _bridge_spec, _canon
from torchlean.verify.tree import Result

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

N_IN, H, N_OUT = 70, 12, 4
EPS_ROOT, EPS_SPLIT, EPS_SAT = 0.04, 0.095, 0.2  # root proves / ReLU splits prove / counterexample


def _mlp(d: Path, seed: int = 3, bump: float = 0.0) -> tuple[Path, np.ndarray, int]:
    """A 70-12-4 ReLU MLP as ONNX (Gemm, Relu, Gemm) in ``d``, a centre x0 and its label (float64
    run of the float32 weights). ``bump`` is added to one first-layer weight (another network)."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((H, N_IN)) * 0.3).astype(np.float32)
    b1 = (rng.standard_normal(H) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((N_OUT, H)) * 0.5).astype(np.float32)
    w1[0, 0] += np.float32(bump)
    m = _model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
                helper.make_node("Relu", ["h"], ["r"]),
                helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)],
               [("x", [1, N_IN])], ("y",), [("w1", w1), ("b1", b1), ("w2", w2)], 13, TensorProto.FLOAT)
    d.mkdir(parents=True, exist_ok=True)
    net = d / "mlp.onnx"
    net.write_bytes(m.SerializeToString())
    x0 = rng.uniform(0.2, 0.8, N_IN)
    y0 = np.maximum(w1.astype(float) @ x0 + b1, 0) @ w2.astype(float).T
    return net, x0, int(y0.argmax())


def _prop(d: Path, x0: np.ndarray, label: int, eps: float) -> Path:
    """VNN-COMP's robustness form: unsafe when some other class scores >= the label."""
    lines = [f"(declare-const X_{i} Real)" for i in range(N_IN)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(N_OUT)]
    for i, v in enumerate(x0):
        lines += [f"(assert (>= X_{i} {float(v - eps)!r}))", f"(assert (<= X_{i} {float(v + eps)!r}))"]
    lines += ["(assert (or"] + [f"  (and (>= Y_{j} Y_{label}))" for j in range(N_OUT) if j != label] + ["))"]
    p = d / f"prop_{eps}.vnnlib"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit10")
    net, x0, label = _mlp(d / "a")
    props = {eps: _prop(d, x0, label, eps) for eps in (EPS_ROOT, EPS_SPLIT, EPS_SAT)}
    other, _, _ = _mlp(d / "b", bump=0.05)  # (the same centre and label: one weight moved)
    return d, net, other, props


def _root_only(t, spec, claim: str = table.ROOT_CLAIM) -> dict:
    """The root check's certificate (per disjunct one leaf claiming ``claim``)."""
    entry = {"per_disjunct": [[["leaf", [[0, claim]]]] for _ in spec.regions[0].disjuncts]}
    return table.unsat_cert(t, spec, [entry])


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from torchlean.verify.__main__ import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _count_replays(monkeypatch) -> list[tuple[str, bool]]:
    """Every ``check_vnn`` call of the search (``table``) and of the CLI: (certificate text, ok)."""
    from torchlean.verify import __main__ as cli

    calls: list[tuple[str, bool]] = []

    def counting(cert, *a, **k):
        v = check_vnn(cert, *a, **k)
        calls.append((table.cert_text(cert), v.ok))
        return v

    monkeypatch.setattr(table, "check_vnn", counting)
    monkeypatch.setattr(cli, "check_vnn", counting)
    return calls


# -- 1. the root check's accepted replay ------------------------------------------------------------

def test_fixture_instances_are_what_the_tests_say(mlp):
    """eps 0.04: root check accepted; 0.095: rejected, then unsat by ReLU splits from the checker's
    root state; 0.2: sat (a point the checker's exact test accepts)."""
    _, net, _, props = mlp
    t, spec = table.load_instance(net, props[EPS_ROOT])
    res = general.verify_target(t, spec, timeout=30)
    assert res.verdict == "unsat" and table.checked_by_search(res) is not None
    t, spec = table.load_instance(net, props[EPS_SPLIT])
    res = general.verify_target(t, spec, timeout=30)
    assert res.verdict == "unsat" and table.checked_by_search(res) is None
    assert res.stats["root_from_check"] and res.stats["subproblems"] > 0
    assert res.checked is not None and not res.checked[1].ok  # (the root check ran, rejected)
    assert check_vnn(res.cert, t.bg, spec).ok
    t, spec = table.load_instance(net, props[EPS_SAT])
    res = general.verify_target(t, spec, timeout=30)
    assert res.verdict == "sat" and check_vnn(res.cert, t.bg, spec).ok


def test_a_certificate_altered_after_the_accepted_replay_is_replayed(mlp):
    """The search's accepted replay is of one text; the result's certificate changed afterwards
    (in place, deep inside: a claim far above the bound) is replayed again and rejected, in the
    mode asked; an equal copy (another dict, the same text) is the replayed certificate."""
    _, net, _, props = mlp
    t, spec = table.load_instance(net, props[EPS_ROOT])
    res = general.verify_target(t, spec, timeout=30)
    mode = table.replay_mode(res.cert, t.bg)
    v, _ = table.replay_result(res, t, spec, mode, time.monotonic() + 60)
    assert v.ok and v is res.checked[1]
    res.cert["regions"][0]["per_disjunct"][-1][0][1][0][1] = "1000000"
    assert table.checked_by_search(res) is None
    for m in ("fast", "exact"):
        v, _ = table.replay_result(res, t, spec, m, time.monotonic() + 60)
        assert not v.ok and "claimed" in v.reason, (m, v.reason)
    res.cert = json.loads(res.checked[0])  # (the text replayed, read back: taken)
    assert table.checked_by_search(res) is res.checked[1]


def test_the_cli_replays_entries_the_search_changed_after_its_root_check(mlp, monkeypatch, capsys):
    """The root check's entries are the search's answer; entries changed after the checker accepted
    them (a wrapper raising a claim past the bound) reach the CLI as a certificate of another
    text: the CLI (and ``verify run``) replays it, the checker rejects it, and the answer is
    unknown, no certificate written. The unchanged run: unsat, one replay in all (the root
    check's)."""
    d, net, _, props = mlp
    calls = _count_replays(monkeypatch)
    out = d / "cert_ok.json"
    code, stdout, err = _cli(capsys, net, props[EPS_ROOT], "--timeout", "60", "--cert", out)
    assert code == 0 and stdout.split()[0] == "unsat" and "checked: unsat" in err
    assert [ok for _, ok in calls] == [True] and calls[0][0] == out.read_text()

    real = table.root_check

    def tampered(t, spec, deadline):
        got = real(t, spec, deadline)
        got[0][0]["per_disjunct"][0][0][1][0][1] = "1000000"  # (after the accepted replay)
        return got

    monkeypatch.setattr(table, "root_check", tampered)
    calls.clear()
    bad = d / "cert_bad.json"
    code, stdout, err = _cli(capsys, net, props[EPS_ROOT], "--timeout", "60", "--cert", bad)
    assert code == 0 and stdout.split()[0] == "unknown", (stdout, err)
    assert "own certificate rejected" in err and not bad.exists()
    assert [ok for _, ok in calls] == [True, False]
    from torchlean.verify import runner  # (``verify run``: the same replay, the same answer)

    row = runner.run_instance(net, props[EPS_ROOT], 60)
    assert row["result"] == "unknown" and row["check"].startswith("REJECTED"), row


def test_a_result_of_another_network_property_or_mode_is_not_taken(mlp):
    """``replay_result`` takes the search's replay only for this network, this property and the
    mode the root check replayed in: a result of another network (one weight moved) or property
    is replayed (and rejected: its fingerprint or digest differs), another mode replays (accepted
    on its own); a rejected verdict on the very text, or a replay of another text, is not taken."""
    _, net, other, props = mlp
    t, spec = table.load_instance(net, props[EPS_ROOT])
    res = general.verify_target(t, spec, timeout=30)
    dl = time.monotonic() + 60
    mode = table.replay_mode(res.cert, t.bg)
    assert mode == "fast"  # (3 leaves x the MLP's 900 form entries: above bounds.EXACT_WORK)
    t2, spec2 = table.load_instance(other, props[EPS_ROOT])
    assert table.network_id(t2) != table.network_id(t) and spec2.digest() == spec.digest()
    v, _ = table.replay_result(res, t2, spec2, mode, dl)
    assert not v.ok and "different network" in v.reason
    t3, spec3 = table.load_instance(net, props[EPS_SPLIT])
    v, _ = table.replay_result(res, t3, spec3, mode, dl)
    assert not v.ok and "different property" in v.reason
    v, _ = table.replay_result(res, t, spec, "exact", dl)
    assert v.ok and v is not res.checked[1] and "exact rational" in v.reason
    text, ok = res.checked
    refused = Result("unsat", cert=res.cert, checked=(text, Verdict(False, reason="deadline exceeded")))
    assert table.checked_by_search(refused) is None
    stale = Result("unsat", cert=_root_only(t, spec, "1000"), checked=res.checked)
    v, _ = table.replay_result(stale, t, spec, mode, dl)
    assert not v.ok  # (replayed, not taken from the other text's replay)


def _states_key(cert, t, spec) -> tuple:
    keep: dict = {}
    check_vnn(cert, t.bg, spec, mode="fast", keep=keep)
    (key,) = keep["states"]
    return key


def test_keep_is_never_read_even_holding_a_state_under_the_real_key(mlp):
    """A second ``check_vnn`` in the process reusing the ``keep`` dict of the first: a forged memo
    holding, under the exact key the replay computes for the whole box, the forward state of a
    tiny box around x0 (where every disjunct is refuted) does not make the false root-only
    certificate of eps 0.2 pass; the replay hands back a memo of its own. Nor does the state
    of the accepted eps-0.04 replay, nor in exact mode."""
    from torchlean.certificates import fast_engine as fe

    _, net, _, props = mlp
    t, spec = table.load_instance(net, props[EPS_SAT])
    false = _root_only(t, spec)
    assert not check_vnn(false, t.bg, spec, mode="fast").ok
    key = _states_key(false, t, spec)
    r = spec.regions[0]
    mid = [(a + b) / 2 for a, b in zip(r.lo, r.hi)]
    tiny = fe.forward(fe.compiled(t.bg), *fe.boxes([mid], [[v + Fraction(1, 10**6) for v in mid]]), "crown")
    forged = {key: tiny}
    keep = {"states": forged}
    v = check_vnn(false, t.bg, spec, mode="fast", keep=keep)
    assert not v.ok and keep["states"] is not forged and forged[key] is tiny
    # (the forged state does refute every disjunct: read, it would have passed)
    from torchlean.certificates.graph_vnn import objective_forms

    forms, _ = objective_forms(t.bg, r, [[(0,)] for _ in r.disjuncts])
    assert (fe.bound_forms(tiny, fe.forms_of(fe.compiled(t.bg), forms)) > 0).all()
    # the keep of an accepted replay (another property, the same network), then exact mode
    t1, spec1 = table.load_instance(net, props[EPS_ROOT])
    keep = {}
    assert check_vnn(_root_only(t1, spec1), t1.bg, spec1, mode="fast", keep=keep).ok
    first = keep["states"]
    assert not check_vnn(false, t.bg, spec, mode="fast", keep=keep).ok and keep["states"] is not first
    keep = {"states": forged}
    assert not check_vnn(false, t.bg, spec, mode="exact", keep=keep).ok


def test_root_rejected_then_sat_or_out_of_time(mlp, monkeypatch, capsys):
    """Root check rejected, then: a counterexample (reported sat only with the checker's acceptance
    of the point, the sat certificate written); or the ReLU-split search gives up (every disjunct
    open: ``bab_disjunct`` answers None): timeout, no certificate, nothing reported checked."""
    d, net, _, props = mlp
    calls = _count_replays(monkeypatch)
    out = d / "sat.json"
    code, stdout, err = _cli(capsys, net, props[EPS_SAT], "--timeout", "60", "--cert", out)
    assert code == 0 and stdout.split()[0] == "sat" and "checked: sat" in err
    assert json.loads(out.read_text())["kind"] == "vnn-sat"
    assert calls[-1] == (out.read_text(), True)
    assert all(json.loads(c)["kind"] == "vnn-sat" or not ok for c, ok in calls)
    calls.clear()
    monkeypatch.setattr(graph_relu, "bab_disjunct", lambda *a, **k: None)
    out = d / "none.json"
    code, stdout, err = _cli(capsys, net, props[EPS_SPLIT], "--timeout", "8", "--cert", out)
    assert code == 0 and stdout.split() == ["timeout"] and "checked" not in err
    assert not out.exists() and [ok for _, ok in calls] == [False]  # (the root check, rejected)


def test_a_root_replay_out_of_time_or_raising_gives_no_checked_answer(mlp, monkeypatch, capsys):
    """The root check's replay stopped by its deadline: rejected, the search bounds the root itself
    (no state from the replay) and proves the property; its certificate (other claims) is
    replayed by the CLI. A replay that raises (not a rejection): no verdict at all (exit 3)."""
    d, net, _, props = mlp
    calls: list[bool] = []

    def late(cert, net_, spec, **k):  # (the first replay, the root check's, out of time)
        v = check_vnn(cert, net_, spec, **{**k, "deadline": time.monotonic() - 1.0} if not calls else k)
        calls.append(v.ok)
        return v

    monkeypatch.setattr(table, "check_vnn", late)
    t, spec = table.load_instance(net, props[EPS_ROOT])
    res = general.verify_target(t, spec, timeout=30)
    assert res.verdict == "unsat" and calls == [False] and table.checked_by_search(res) is None
    # a replay stopped by its deadline hands out only whole states (a memo entry is stored once
    # its forward pass returned): here the root's, bit for bit the search's own pass
    from torchlean.certificates import fast_engine as fe

    monkeypatch.setattr(table, "check_vnn", check_vnn)
    got = table.root_check(t, spec, time.perf_counter() - 1.0)
    assert not got[1][1].ok and "deadline" in got[1][1].reason
    box = fe.boxes([spec.regions[0].lo], [spec.regions[0].hi])
    st, ref = table.root_state(got[2], *box), fe.forward(fe.compiled(t.bg), *box, "crown")
    assert st is not None or not got[2]
    for a, b in zip(st.L + st.U, ref.L + ref.U) if st is not None else ():
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(table, "check_vnn", late)
    v, _ = table.replay_result(res, t, spec, table.replay_mode(res.cert, t.bg), time.monotonic() + 60)
    assert v.ok and calls == [False, True]

    def boom(*a, **k):
        raise RuntimeError("replay crashed")

    monkeypatch.setattr(table, "check_vnn", boom)
    code, stdout, err = _cli(capsys, net, props[EPS_ROOT], "--timeout", "60", "--cert", d / "boom.json")
    assert code == 3 and stdout == "" and "internal error" in err and not (d / "boom.json").exists()


def test_verify_check_rejects_what_the_cli_would_not_accept(mlp, capsys):
    """``verify check`` (the standalone replay, both modes): the CLI's root-checked certificate is
    accepted; the root-only certificate of the eps-0.095 instance (the root check rejected it,
    the search went on) is rejected, as are the accepted one with a claim raised, against the
    other network, and against the other property."""
    d, net, other, props = mlp
    cert = d / "root.json"
    code, stdout, _ = _cli(capsys, net, props[EPS_ROOT], "--timeout", "60", "--cert", cert)
    assert code == 0 and stdout.split()[0] == "unsat"
    t, spec = table.load_instance(net, props[EPS_SPLIT])
    open_root = d / "open_root.json"
    open_root.write_text(table.cert_text(_root_only(t, spec)))
    raised = json.loads(cert.read_text())
    raised["regions"][0]["per_disjunct"][1][0][1][0][1] = "1000"
    raised_p = d / "raised.json"
    raised_p.write_text(json.dumps(raised))
    for mode in ("fast", "exact"):
        assert _cli(capsys, "check", cert, net, props[EPS_ROOT], "--mode", mode)[0] == 0
        for c, n, p in ((open_root, net, props[EPS_SPLIT]), (raised_p, net, props[EPS_ROOT]),
                        (cert, other, props[EPS_ROOT]), (cert, net, props[EPS_SPLIT])):
            code, stdout, _ = _cli(capsys, "check", c, n, p, "--mode", mode)
            assert code == 1 and stdout.startswith("rejected"), (mode, c.name, p.name, stdout)


# -- 2. the trusted VNN-LIB reader -------------------------------------------------------------------

HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
BODY = "(assert (<= Y_0 5))\n"

#: name -> (text, how SMT-LIB reads the asserted output atoms as (a, b) of a·y <= b). Each one
#: the trusted reader mis-split before this audit (an assert hidden or made up); now refused
VARIANTS = {
    # a string holding " ;": the rest of the line was a comment to the reader, the assert lost
    "string_semicolon": (HEAD + BODY + '(set-info :x "a ;b") (assert (>= Y_0 9)) (set-info :y "\nz")\n',
                         {(5, False), (9, True)}),
    # a string spanning lines: its text "(assert (<= Y_0 -100))" was read as an assert
    "string_text": (HEAD + BODY + '(set-info :x "\n) (assert (<= Y_0 -100)) (set-info :y \n")\n',
                    {(5, False)}),
    # a quoted symbol holding ";" (SMT-LIB's |...|)
    "quoted_symbol": (HEAD + BODY + "(set-logic |QF ;LRA|) (assert (>= Y_0 9)) (set-info :y |\nz|)\n",
                      {(5, False), (9, True)}),
    # ";" inside a token starts a comment in SMT-LIB; the reader read "a;b" as one token
    "semicolon_in_token": (HEAD + BODY + "(set-info :x a;b) (assert (<= Y_0 -100)) (set-info :y c\n)\n",
                           {(5, False)}),
    # a carriage return ends a comment in SMT-LIB 2.6: the assert after it is read there
    "cr_in_comment": (HEAD + "; the unsafe set:\r(assert (<= Y_0 -1))\n" + BODY, {(5, False), (-1, False)}),
    # SMT-LIB's check-sat answers for the asserts before it; nothing after exit is read
    "assert_after_check_sat": (HEAD + BODY + "(check-sat)\n(assert (<= Y_0 -100))\n", {(5, False)}),
    "assert_after_exit": (HEAD + BODY + "(exit)\n(assert (<= Y_0 -100))\n", {(5, False)}),
    "declare_after_exit": (HEAD + BODY + "(exit)\n(declare-const Y_1 Real)\n", {(5, False)}),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_smtlib_lexing_variants_are_refused_by_the_trusted_reader(name):
    """Each variant is refused by the trusted reader (so by ``verify``, ``verify check`` and the
    runner: ``load_spec`` reads it first). Where the lark reader reads it, its reading is the SMT-LIB
    one for the string and comment variants (what the trusted reader got wrong), and the file
    order-blind one for the command-order variants (both readers ignored SMT-LIB's order)."""
    text, smtlib = VARIANTS[name]
    with pytest.raises(PropertyError):
        parse_property(text)
    try:
        other = _bridge_spec(Path("p.vnnlib"), text)
    except InputError:
        return
    (box,) = other[2]
    got = {(int(b) if a[0] > 0 else -int(b), a[0] < 0) for conj in box[4] for a, b, _ in conj}
    if name in ("string_semicolon", "string_text", "semicolon_in_token", "cr_in_comment"):
        assert got == smtlib  # (cr_in_comment: since audit12 lark ends a comment at CR too)
    elif name == "declare_after_exit":
        assert got == smtlib and other[1] == 2  # (a second output declared after the script's end)
    else:
        assert got > smtlib  # (the assert after check-sat/exit read too)


@pytest.mark.parametrize("extra", [
    '; a comment with "quotes", |bars| and a ;\n', "(set-info :status unsat)\n", "(set-logic QF_LRA)\n",
    "(set-info :source ABC)\n", "(check-sat)\n", "(check-sat)\n(exit)\n",
])
def test_what_stays_readable_reads_as_the_bare_file(extra):
    """Comments (with quotes and bars), commands of plain atoms, and check-sat/exit at the end, with
    LF or CRLF line ends: both readers read the bare file's set. (A nested set-info and a
    declare-fun of another sort or with arguments stay refused.)"""
    bare = parse_property(HEAD + BODY)
    texts = [HEAD + BODY + extra] if "check" in extra else [extra + HEAD + BODY, HEAD + extra + BODY]
    for text in texts:
        for t in (text, text.replace("\n", "\r\n")):
            spec = parse_property(t)
            assert spec == bare and _canon(spec) == _bridge_spec(Path("p.vnnlib"), t)
    for bad in ("(set-info :x (assert (<= Y_0 -1)))\n", "(set-info :x ((assert (<= Y_0 -1))))\n",
                "(declare-fun Y_1 (Real) Real)\n", "(declare-fun Y_1 () Int)\n",
                "(declare-fun Y_1 () (Array Int Real))\n"):
        with pytest.raises(PropertyError):
            parse_property(HEAD + bad + BODY)


def test_a_carriage_return_in_a_comment_gives_no_verdict(tmp_path, capsys):
    """End to end, the hole: y = x on [0, 1]; the file asserts Y_0 <= -1 (after a comment ended
    by a carriage return, as SMT-LIB 2.6 ends it) and Y_0 <= 5: unsat. Both readers dropped the
    first assert and the CLI answered a checked "sat" (x = 0.0002). Now: refused (exit 2), and so
    is ``verify check`` of that sat certificate."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 1])], ("y",),
               [("w", np.ones((1, 1), np.float32))], 13, TensorProto.FLOAT)
    net = tmp_path / "id.onnx"
    net.write_bytes(m.SerializeToString())
    prop = tmp_path / "p.vnnlib"
    prop.write_bytes(VARIANTS["cr_in_comment"][0].encode())
    code, stdout, err = _cli(capsys, net, prop, "--timeout", "30")
    assert code == 2 and stdout == "" and "carriage return" in err
    fixed = tmp_path / "fixed.vnnlib"  # (the comment ended by a line feed: the same set, read)
    fixed.write_bytes(VARIANTS["cr_in_comment"][0].replace("\r", "\n").encode())
    code, stdout, _ = _cli(capsys, net, fixed, "--timeout", "30")
    assert code == 0 and stdout.split()[0] == "unsat"
    cert = tmp_path / "sat.json"
    cert.write_text(json.dumps({"kind": "vnn-sat", "version": 1, "network": "x", "property": "y",
                                "x": ["0"]}))
    assert _cli(capsys, "check", cert, net, prop)[0] == 2


# -- 3. the obligation reader (certificates/sexpr.py), the same lexing ---------------------------------

SCRIPT = "(declare-const x Real)\n(assert (! (< x 0) :named goal))\n{}(check-sat)\n"


def test_obligation_reader_refuses_a_string_opened_inside_an_atom():
    """``certificates/sexpr.py`` (a refutation certificate's statement) refused atoms starting with
    '"' or '|' only: in ``(set-info :x (a"`` SMT-LIB ends the symbol ``a`` and opens a string
    whose text, over the next line, it reads as a string; the reader read it as structure, and
    the assert ``dom_hidden: x > 0`` inside it was part of the statement (refuting the goal x < 0
    then needs nothing: a claim x >= 0 "proved" for every x). Now refused; a quote or bar in a
    comment, and the proof library's statements, still read."""
    from torchlean.certificates.core import Rejected
    from torchlean.certificates.sexpr import read_script

    hidden = ('(set-info :x (a"\n)) (assert (! (> x 0) :named dom_hidden)) (set-info :y (b"\n))\n')
    with pytest.raises(Rejected, match="strings"):
        read_script(SCRIPT.format(hidden))
    for bad in ('(set-info :x a|b)\n', '(set-info :x "s")\n', "(set-info :x |s|)\n"):
        with pytest.raises(Rejected, match="strings"):
            read_script(SCRIPT.format(bad))
    s = read_script(SCRIPT.format('; a "comment" with |bars|\n(set-info :x (a b))\n'))
    assert [n for n, _ in s.asserts] == ["goal"]
    import glob

    texts = []
    for p in glob.glob(str(Path(__file__).resolve().parents[1] / "torchlean/proofs/library/*.json")):
        stack = [json.loads(Path(p).read_text())]
        while stack:
            o = stack.pop()
            if isinstance(o, dict):
                stack += o.values()
            elif isinstance(o, list):
                stack += o
            elif isinstance(o, str) and "(check-sat)" in o and "(assert (!" in o:
                texts.append(o)
    assert len(texts) > 50
    for text in texts:
        assert read_script(text).goal is not None


def test_obligation_reader_shares_the_property_readers_lexing():
    """One lexical layer (``sexpr.lex``) serves both trusted readers, so the property reader's
    refusals hold for obligations too: a carriage return ending a comment in SMT-LIB (the hidden
    ``dom_hidden`` would be read by a solver and not by the checker, whose statement would then
    differ from the solver's) and ';' inside an atom are refused; a CRLF script still reads."""
    from torchlean.certificates.core import Rejected
    from torchlean.certificates.sexpr import read_script

    with pytest.raises(Rejected, match="carriage return"):
        read_script(SCRIPT.format("; c\r(assert (! (> x 0) :named dom_hidden))\n"))
    with pytest.raises(Rejected, match="strings"):
        read_script(SCRIPT.format("(set-info :x a;b)\n"))
    crlf = read_script(SCRIPT.format("; a comment\n").replace("\n", "\r\n"))
    assert [n for n, _ in crlf.asserts] == ["goal"]


# -- 4. random files against an independent SMT-LIB 2.6 lexer ----------------------------------------

def _smtlib_commands(text: str) -> list:
    """SMT-LIB 2.6's reading of ``text`` (reference, written from the standard's lexicon, not from
    either reader): white space is space, tab, CR, LF; ``;`` starts a comment ended by CR or LF;
    ``"..."`` a string (``""`` inside is one quote), ``|...|`` a quoted symbol, both atoms whatever
    they hold; anything else up to those is a symbol or numeral. Top-level commands as nested
    lists of atoms; ``ValueError`` when unbalanced or unterminated."""
    out: list = []
    stack: list[list] = [out]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == ";":
            while i < n and text[i] not in "\r\n":
                i += 1
        elif c == "(":
            stack.append([])
            i += 1
        elif c == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced")
            done = stack.pop()
            stack[-1].append(done)
            i += 1
        elif c in '"|':
            j = i + 1
            while True:
                j = text.find(c, j)
                if j < 0:
                    raise ValueError("unterminated")
                if c == '"' and text[j + 1:j + 2] == '"':
                    j += 2
                    continue
                break
            stack[-1].append(text[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n();"|':
                j += 1
            stack[-1].append(text[i:j])
            i = j
    if len(stack) != 1:
        raise ValueError("unterminated list")
    return out


def _show(e) -> str:
    return e if isinstance(e, str) else "(" + " ".join(_show(x) for x in e) + ")"


def _meaning(text: str) -> str:
    """The declarations and asserts SMT-LIB's query holds (up to the first check-sat or exit),
    printed back plainly: a file whose reading is the set that query asks about."""
    kept = []
    for cmd in _smtlib_commands(text):
        if cmd and cmd[0] in ("check-sat", "exit"):
            break
        if cmd and cmd[0] in ("declare-const", "declare-fun", "assert"):
            kept.append(_show(cmd))
    return "\n".join(kept) + "\n"


#: pieces of noise: the characters that SMT-LIB and a naive reader may split differently
_NOISE = ['; note "', "; a |bar| ;", '; x\r(assert (<= Y_0 -7))', '(set-info :source "a ;b")',
          '(set-info :x "\n) (assert (<= Y_0 -7)) (set-info :y \n")', "(set-logic |QF ;LRA|)",
          "(set-info :x a;b)", '(set-info :x (a"\n)) (assert (<= Y_0 -7)) (set-info :y (b"\n))',
          "(set-info :status unsat)", "(set-logic QF_LRA)", "(check-sat)", "(exit)",
          '(set-info :q "say ""hi"" ;")', "; plain comment", "(set-info :n (1 2 (x)))"]


def test_random_files_read_as_smtlib_reads_them_or_refused():
    """300 files of declarations, bounds and output asserts with noise between them (strings,
    quoted symbols, comments with quotes, bars and carriage returns, ``;`` in tokens, neutral
    commands, check-sat/exit anywhere, CRLF or LF line ends): whenever the trusted reader accepts
    one, it reads the set the reference SMT-LIB lexer's query holds (``_meaning``, printed back
    and read); the noise must leave both outcomes common."""
    rng = np.random.default_rng(10)
    accepted = refused = noisy = 0
    for _ in range(300):
        parts = ["(declare-const X_0 Real)", "(declare-const Y_0 Real)", "(assert (>= X_0 0))",
                 "(assert (<= X_0 1))"] + [f"(assert (<= Y_0 {k}))" for k in rng.integers(-3, 9, 2)]
        rng.shuffle(parts[2:])
        for _ in range(int(rng.integers(0, 4))):
            parts.insert(int(rng.integers(0, len(parts) + 1)), _NOISE[int(rng.integers(len(_NOISE)))])
        text = ("\r\n" if rng.random() < 0.3 else "\n").join(parts) + "\n"
        try:
            spec = parse_property(text)
        except PropertyError:
            refused += 1
            continue
        accepted += 1
        noisy += any(p in text for p in _NOISE)
        try:
            ref = parse_property(_meaning(text))
        except (PropertyError, ValueError) as e:
            raise AssertionError(f"read {text!r}, which SMT-LIB reads otherwise ({e})") from None
        assert spec == ref, text
    assert accepted > 50 and refused > 50 and noisy > 20, (accepted, refused, noisy)
