"""One replay per statement within a proof run (``artifacts.once``), and discharge's idle work
(issue 18, the transformer's proof in budget).

Checked here: inside ``once()`` a decided statement is replayed once for ``discharge`` and
``check_one`` together, and a model claim's node obligations are not replayed again when counted;
outside it every call replays; a statement that fails is refused under the memo as without it;
``discharge`` runs the caller's ``idle`` work while a solver process runs and replays decided
claims whatever their order.
"""

from __future__ import annotations

import torchlean.proofs.artifacts as artifacts
from torchlean.proofs import terms
from torchlean.proofs.artifacts import check_one, once
from torchlean.proofs.autograd import Case, rule_obligations
from torchlean.proofs.discharge import discharge
from torchlean.runtime.rules import RULES
from torchlean.spec.primitives import PRIMITIVES


def _terms_obligation(rows=2):
    return terms.forward_obligation("matmul", {"shapes": [[rows, 3], [3, 2]], "attrs": {}, "ints": {},
                                               "column_major": []})


def _counting(monkeypatch):
    calls = []
    real = artifacts.replay

    def replay(cert):
        calls.append(cert.get("kind"))
        return real(cert)

    monkeypatch.setattr(artifacts, "replay", replay)
    return calls


def test_inside_once_a_decided_statement_is_replayed_once(tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    ob = _terms_obligation()
    with once():
        (rep,) = discharge([ob], tmp_path, progress=False)
        first, again = check_one(tmp_path, ob), check_one(tmp_path, ob)
    assert rep.status == "proved" and first.status == again.status == "checked"
    assert calls == ["terms"]
    calls.clear()
    assert check_one(tmp_path, ob).status == "checked" and calls == ["terms"]  # outside: replayed
    calls.clear()
    assert check_one(tmp_path, ob).status == "checked" and calls == ["terms"]


def test_a_false_statement_is_refused_inside_once(tmp_path, monkeypatch):
    monkeypatch.setitem(RULES, "matmul", type(RULES["matmul"])(
        "matmul", lambda xp, a, b: xp.matmul(a[..., :-1], b[:-1]), RULES["matmul"].vjp))
    ob = _terms_obligation(rows=3)
    with once():
        (rep,) = discharge([ob], tmp_path, progress=False)
        out = check_one(tmp_path, ob)
    assert rep.status == "refuted" and out.status == "missing"


def test_discharge_does_idle_work_while_a_solver_runs(tmp_path):
    (ob,) = [o for o in rule_obligations("tanh", RULES["tanh"].forward, RULES["tanh"].vjp,
                                         PRIMITIVES["tanh"].sympy, Case(((1,),)), subject="primitive:tanh")
             if o.kind == "autograd"]
    work = list(range(3))
    done = []

    def idle():
        if not work:
            return False
        done.append(work.pop(0))
        return True

    decided = _terms_obligation()
    reports = discharge([decided, ob], tmp_path, solver="z3", timeout=20, progress=False, idle=idle)
    assert {r.name: r.status for r in reports} == {decided.name: "proved", ob.name: "proved"}
    assert done  # some of the caller's work ran between polls (what is left stays the caller's)
    assert check_one(tmp_path, decided).status == "checked" and check_one(tmp_path, ob).status == "checked"
