"""Audit audit44: gradient claims at integer and index values (masks, indices, ties).

The hole: a node's integer inputs (masks, indices) are part of its proof case *by value*
(``compose._case_of``). Where a model holds ``tl.autograd.grad(create_graph=True)``, the runtime's
own VJP rules make selection masks from the point's values (relu's ``x > 0``, abs's, leaky_relu's,
maximum's ``a >= b``), and each reaches a recorded ``where`` node; the node's forward and autograd
claims were proved at the traced point's mask only, and the second-point check compared masks by
shape. End to end: a project ``where`` rule whose VJP reads a 2-D mask's rows right to left (right
on palindromic rows, and on the library's 1-D case) and a gradient-penalty model ``GP`` (relu,
every unit on at the seeded trace point): ``proofs check`` said "172 obligations, 172 checked, 0
failed" (exit 0) while at x = (-20, 20) (mask [0, 1, 1]) the runtime's parameter gradient differed
from torch.autograd's by 1.12. A Python-made index or mask (from raw ``.data``) reached its node's
case by value the same way. Fixed (untrusted only): torchlean's ``where`` with mask and branches of
one shape is proved at two entries holding both mask values (entrywise: every shape, every mask);
a recorded backward's mask reaching any other case is refused; the second point compares every
node's case key. Ties and kinks (max_pool2d, amax, maximum, relu/abs at 0) are outside the claims:
their domains exclude them (asserted below, with torch's choices at ties). Found on the way (it
failed closed): a model node whose obligation is a library one was looked for in the project's
``proofs/`` only; it is replayed from the package's library now.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.proofs.compose import shapes_covered, trace
from torchlean.proofs.obligation import NoProofCase
from torchlean.runtime import functional as F
from torchlean.runtime import rules
from torchlean.runtime.rules import sum_to
from torchlean.runtime.tensor import Tensor

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "torchlean" / "proofs" / "library"


def _where_fwd(xp, c, a, b):
    return xp.where(c, a, b)


def _where_vjp_reversed(xp, g, out, c, a, b):
    """where's VJP with a 2-D mask's rows read right to left: right on palindromic rows only (and
    on the library's 1-D case, so the shipped claim of ``where`` still checks)."""
    cm = np.asarray(getattr(c, "data", c), dtype=bool)
    if cm.ndim > 1:
        cm = cm[..., ::-1]
    zero = xp.zeros_like(g)
    return None, sum_to(xp, xp.where(cm, g, zero), a.shape), sum_to(xp, xp.where(cm, zero, g), b.shape)


@pytest.fixture
def reversed_where():
    saved = rules.RULES["where"]
    rules.RULES["where"] = rules.Rule("where", _where_fwd, _where_vjp_reversed)
    try:
        yield
    finally:
        rules.RULES["where"] = saved


W1 = [[0.19, -0.33], [-0.65, -0.68], [0.44, 0.58]]
W2 = [[0.6, -0.9, 0.7]]


class GP(nn.Module):
    """A gradient penalty: |d/dx net(x)|^2 with net = Linear(2, 3)-ReLU-Linear(3, 1), the hidden
    biases 5 (every unit on at the seeded trace point, a palindromic mask)."""

    def __init__(self, act=None):
        super().__init__()
        self.l1, self.l2 = nn.Linear(2, 3), nn.Linear(3, 1)
        dt = self.l1.weight.data.dtype
        self.l1.weight.data = np.array(W1, dtype=dt)
        self.l1.bias.data = np.array([5.0, 5.0, 5.0], dtype=dt)
        self.l2.weight.data = np.array(W2, dtype=dt)
        self.act = act or (lambda h: h.relu())

    def forward(self, x):
        y = self.l2(self.act(self.l1(x)))
        (gx,) = tl.autograd.grad(y.sum(), x, create_graph=True)
        return (gx * gx).sum(dim=1, keepdim=True)


def _grads_vs_torch(m: GP, xv: list[float], torch_act=None) -> tuple[float, list[int]]:
    """(max |torchlean - torch| over the parameter gradients of m at x = xv, relu's mask)."""
    torch = pytest.importorskip("torch")
    for p in m.parameters():
        p.data, p.grad = np.asarray(p.data, dtype=np.float64), None
    x = Tensor(np.array([xv], dtype=np.float64), requires_grad=True)
    m(x).sum().backward()
    ps = [torch.tensor(p.data, requires_grad=True) for p in (m.l1.weight, m.l1.bias, m.l2.weight, m.l2.bias)]
    xt = torch.tensor([xv], dtype=torch.float64, requires_grad=True)
    h = xt @ ps[0].T + ps[1]
    y = (torch_act or torch.relu)(h) @ ps[2].T + ps[3]
    (gx,) = torch.autograd.grad(y.sum(), xt, create_graph=True)
    (gx * gx).sum().backward()
    ours = [m.l1.weight.grad, m.l1.bias.grad, m.l2.weight.grad, m.l2.bias.grad]
    # (the penalty reads the biases only through relu's mask: no gradient, or zeros)
    diff = max(float(np.abs(_arr(o, p) - _arr(t.grad, p)).max()) for o, t, p in zip(ours, ps, ps))
    return diff, (h.detach().numpy()[0] > 0).astype(int).tolist()


def _arr(g, like) -> np.ndarray:
    return np.zeros(tuple(like.shape)) if g is None else np.asarray(g.numpy(), dtype=np.float64)


def _x0() -> list[float]:
    return np.random.default_rng(0).standard_normal(2).tolist()  # compose.trace's point for (1, 2)


# -- the reference facts --------------------------------------------------------------------------


def test_reversed_where_is_right_at_the_traced_mask_and_wrong_at_another(reversed_where):
    """The fact behind the hole: with the project rule the runtime's gradient equals torch's at the
    traced point (mask [1, 1, 1]) and at x = (20, 20) (mask [1, 0, 1]), and is off by > 1 at
    x = (-20, 20) (mask [0, 1, 1])."""
    diff, mask = _grads_vs_torch(GP(), _x0())
    assert mask == [1, 1, 1] and diff < 1e-12
    diff, mask = _grads_vs_torch(GP(), [20.0, 20.0])
    assert mask == [1, 0, 1] and diff < 1e-12
    diff, mask = _grads_vs_torch(GP(), [-20.0, 20.0])
    assert mask == [0, 1, 1] and diff > 1.0


@pytest.mark.parametrize("xv", [[0.3, -0.2], [-20.0, 20.0], [0.0, 30.0], [-30.0, 0.0], [20.0, 20.0]])
def test_shipped_gradient_penalty_matches_torch_at_every_mask(xv):
    """torchlean's own rules: the recorded second derivative equals torch's whatever relu's mask."""
    diff, _ = _grads_vs_torch(GP(), xv)
    assert diff < 1e-12


# -- the fix: a recorded backward's masks -----------------------------------------------------------


def test_recorded_mask_into_a_replaced_where_is_refused(reversed_where):
    """The old code traced GP with the project where rule and keyed the where node at the traced
    mask [[True, True, True]]; now a NoProofCase names the model and the construct."""
    with pytest.raises(NoProofCase, match=r"@verified model GP: .*recorded backward's mask"):
        trace(GP, (1, 2))


def _relu_vjp_own_mask(xp, g, out, x):
    """relu's VJP making its mask itself from raw values, and calling ``F.where`` (not ``xp``)."""
    m = np.asarray(getattr(x, "data", x)) > 0
    if isinstance(g, Tensor):  # a recorded backward
        return (F.where(Tensor(m), g, g * 0.0),)
    return (np.where(m, g, 0 * g),)


def test_a_mask_a_rule_makes_itself_is_the_points_too(reversed_where):
    """Every integer input of a node a recorded VJP makes is the point's, not only the masks made
    through the recorded namespace: a relu VJP building its own mask for the replaced where is
    refused (its mask is [[True, True, True]] at both traced points, so the key comparison alone
    would let it through)."""
    saved = rules.RULES["relu"]
    rules.RULES["relu"] = rules.Rule("relu", saved.forward, _relu_vjp_own_mask)
    try:
        with pytest.raises(NoProofCase, match=r"@verified model GP: .*recorded backward's mask"):
            trace(GP, (1, 2))
    finally:
        rules.RULES["relu"] = saved


def _where_cases(build) -> list[tuple[str, dict]]:
    _, _, cases = trace(build, (1, 2))
    return [(k, f) for k, f, _ in cases if k.startswith("where.")]


@pytest.mark.parametrize("act", ["relu", "abs", "leaky_relu", "clamp", "maximum"])
def test_recorded_masks_share_one_mask_generic_case(act):
    """Each activation's recorded where node, at two models whose traced masks differ, has one
    case: both mask values at two entries (the old code keyed it by the traced mask)."""
    fn = {"relu": lambda h: h.relu(), "abs": lambda h: h.abs(), "leaky_relu": lambda h: F.leaky_relu(h, 0.1),
          "clamp": lambda h: F.clamp(h, -6.0, 6.0), "maximum": lambda h: F.maximum(h, h * 0.5)}[act]

    def build(bias):
        def make():
            m = GP(fn)
            m.l1.bias.data = np.asarray(bias, dtype=m.l1.weight.data.dtype)
            return m
        return make

    on, mixed = _where_cases(build([5.0, 5.0, 5.0])), _where_cases(build([5.0, -5.0, 5.5]))
    assert on and {k for k, _ in on} == {k for k, _ in mixed}
    for _, f in on + mixed:
        assert f["shapes"] == [None, [2], [2]] and f["ints"] == {0: [True, False]}


def test_model_level_where_at_one_shape_is_mask_generic():
    """A where the model writes with a constant mask of its branches' shape joins the same case
    (its claim covers the mask it has), while a broadcast mask stays keyed by value."""
    class Masked(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.lin, self.mask = nn.Linear(2, 3), Tensor(np.array(mask))

        def forward(self, x):
            h = self.lin(x)
            return F.where(self.mask, h, h * 0.5)

    one = _where_cases(lambda: Masked([[True, False, False]]))
    other = _where_cases(lambda: Masked([[False, False, True]]))
    assert one[0][0] == other[0][0] and one[0][1]["ints"] == {0: [True, False]}
    wide = _where_cases(lambda: Masked([[True]]))  # broadcast over the row
    assert wide[0][1]["ints"] == {0: [[True]]} and wide[0][0] != one[0][0]


def test_the_mask_generic_case_says_every_mask():
    from torchlean.proofs.autograd import exact_floats
    from torchlean.proofs.compose import node_obligations

    ((key, fields),) = _where_cases(GP)
    with exact_floats():
        obs = node_obligations("where", key, fields)
    assert {ob.kind for ob in obs} == {"forward", "autograd"}
    for ob in obs:
        assert shapes_covered(ob) == (
            True, "every shape and every mask (entrywise selection: both mask values)")


# -- the fix: indices and masks made in Python from raw values ----------------------------------------


class RawIndex(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        h = self.lin(x)
        # raw .data (no hook sees the read): [1, 0] at the seeded point, [0, 1] at the second
        return h.gather(1, Tensor(np.argsort(x.data, axis=1)))


class RawBroadcastMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        h = self.lin(x)
        return F.where(Tensor(x.data[:, 1:] > 0), h, h * 0.5)  # False there, True at the second


@pytest.mark.parametrize("model", [RawIndex, RawBroadcastMask])
def test_raw_index_or_mask_held_by_value_is_refused(model):
    """An index or broadcast mask made from raw .data values is held by value in its node's case;
    at the second point it differs, and the trace is refused (the old code compared its shape)."""
    with pytest.raises(NoProofCase, match=f"@verified model {model.__name__}: .*integer input"):
        trace(model, (1, 2))


def test_model_constants_by_value_still_trace():
    """Indices that are the model's own constants (cross_entropy's targets, a gather index) are
    the same at every point: traced, keyed by value (another target is another case)."""
    class CE(nn.Module):
        def __init__(self, target):
            super().__init__()
            self.lin, self.target = nn.Linear(2, 3), Tensor(np.array([target]))

        def forward(self, x):
            return F.cross_entropy(self.lin(x), self.target).reshape(1, 1)

    keys = []
    for target in (1, 2):
        _, _, cases = trace(lambda t=target: CE(t), (1, 2))
        (gather,) = [(k, f) for k, f, _ in cases if k.startswith("gather.")]
        assert gather[1]["ints"] == {1: [[target]]}
        keys.append(gather[0])
    assert keys[0] != keys[1]


def test_cross_entropy_gradient_matches_torch_for_each_target():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 5))
    for target in ([0, 4, 2, 2], [3, 3, 3, 3], [1, 0, 4, 3]):
        x = Tensor(z.copy(), requires_grad=True)
        F.cross_entropy(x, Tensor(np.array(target))).backward()
        xt = torch.tensor(z, requires_grad=True)
        torch.nn.functional.cross_entropy(xt, torch.tensor(target)).backward()
        assert np.abs(x.grad.numpy() - xt.grad.numpy()).max() < 1e-12


# -- ties and kinks: outside every claim ---------------------------------------------------------------


def _library_domain(name: str) -> list[str]:
    import json

    text = json.loads((LIB / f"{name}.json").read_text())["obligation"]["smtlib"]
    return [line for line in text.splitlines() if ":named dom_" in line]


@pytest.mark.parametrize("name, atoms", [
    ("autograd.relu", ["(or (> x0_0 0) (< x0_0 0))"]),
    ("autograd.abs", ["(or (> x0_0 0) (< x0_0 0))"]),
    ("autograd.maximum", ["(or (> x0_0 x1_0) (< x0_0 x1_0))", "(or (> x0_1 x1_0) (< x0_1 x1_0))"]),
    ("autograd.minimum", ["(or (> x0_0 x1_0) (< x0_0 x1_0))", "(or (> x0_1 x1_0) (< x0_1 x1_0))"]),
    ("autograd.max", ["(or (> x0_0 x0_1) (< x0_0 x0_1))", "(or (> x0_0 x0_2) (< x0_0 x0_2))",
                      "(or (> x0_1 x0_2) (< x0_1 x0_2))"]),
])
def test_kinks_and_ties_are_outside_the_claims(name, atoms):
    """The shipped autograd claims assume the point is off the kink / tie, so none is made where
    torch and torchlean may route a tie's gradient differently."""
    dom = _library_domain(name)
    assert len(dom) == len(atoms) and all(a in d for a, d in zip(atoms, dom))


def test_tie_choices_against_torch():
    """What each side does at ties (outside the claims): max_pool2d (first maximum), amax (shared
    evenly), relu and abs at 0 (0), clamp at a bound (1) agree with torch; maximum at a tie gives
    the whole gradient to its first argument where torch splits it."""
    torch = pytest.importorskip("torch")

    def both(fn_tl, fn_t, *vals):
        xs = [Tensor(np.array(v, dtype=np.float64), requires_grad=True) for v in vals]
        fn_tl(*xs).sum().backward()
        ts = [torch.tensor(np.array(v, dtype=np.float64), requires_grad=True) for v in vals]
        fn_t(*ts).sum().backward()
        return [x.grad.numpy() for x in xs], [t.grad.numpy() for t in ts]

    plane = [[[[1.0, 1.0, 0.0, 2.0], [1.0, 0.5, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0], [0.0, 3.0, 3.0, 1.0]]]]
    for fn_tl, fn_t, vals in [
        (lambda x: F.max_pool2d(x, 2), lambda x: torch.nn.functional.max_pool2d(x, 2), [plane]),
        (lambda x: F.amax(x, 1), lambda x: torch.amax(x, 1), [[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]]),
        (lambda x: x.relu(), torch.relu, [[0.0, -1.0, 2.0]]),
        (lambda x: x.abs(), torch.abs, [[0.0, -1.0, 2.0]]),
        (lambda x: F.clamp(x, -1.0, 1.0), lambda x: torch.clamp(x, -1.0, 1.0), [[-1.0, 1.0, 0.5, 2.0]]),
    ]:
        ours, theirs = both(fn_tl, fn_t, *vals)
        assert all(np.array_equal(o, t) for o, t in zip(ours, theirs))
    ours, theirs = both(F.maximum, torch.maximum, [1.0, 2.0], [1.0, 0.0])
    assert [o.tolist() for o in ours] == [[1.0, 1.0], [0.0, 0.0]]
    assert [t.tolist() for t in theirs] == [[0.5, 1.0], [0.5, 0.0]]
    ours, theirs = both(F.minimum, torch.minimum, [1.0, 2.0], [1.0, 0.0])
    assert [o.tolist() for o in ours] == [[1.0, 0.0], [0.0, 1.0]]
    assert [t.tolist() for t in theirs] == [[0.5, 0.0], [0.5, 1.0]]


# -- end to end ---------------------------------------------------------------------------------------


MODULE = '''
import numpy as np
import torchlean as tl
from torchlean.runtime import rules
from torchlean.runtime.rules import sum_to


def where_fwd(xp, c, a, b):
    return xp.where(c, a, b)


def where_vjp(xp, g, out, c, a, b):
    cm = np.asarray(getattr(c, "data", c), dtype=bool)
    if cm.ndim > 1:
        cm = cm[..., ::-1]        # a 2-D mask's rows read right to left
    zero = xp.zeros_like(g)
    return None, sum_to(xp, xp.where(cm, g, zero), a.shape), sum_to(xp, xp.where(cm, zero, g), b.shape)


if REPLACE:
    rules.RULES["where"] = rules.Rule("where", where_fwd, where_vjp)


@tl.verified(input_shape=(1, 2))
class GP(tl.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = tl.nn.Linear(2, 3)
        self.l2 = tl.nn.Linear(3, 1)
        dt = self.l1.weight.data.dtype
        self.l1.weight.data = np.array([[0.19, -0.33], [-0.65, -0.68], [0.44, 0.58]], dtype=dt)
        self.l1.bias.data = np.array([5.0, 5.0, 5.0], dtype=dt)
        self.l2.weight.data = np.array([[0.6, -0.9, 0.7]], dtype=dt)

    def forward(self, x):
        y = self.l2(self.l1(x).relu())
        (gx,) = tl.autograd.grad(y.sum(), x, create_graph=True)
        return (gx * gx).sum(dim=1, keepdim=True)
'''


def _project(tmp_path: Path, replace: bool) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.torchlean]\nproofs = "proofs"\nmodules = ["gp44"]\n')
    (tmp_path / "gp44.py").write_text(f"REPLACE = {replace}\n" + textwrap.dedent(MODULE))
    return tmp_path


def _proofs(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{cwd}{os.pathsep}{ROOT}", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torchlean.proofs", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_proofs_refuse_the_replaced_where_under_a_recorded_backward(tmp_path):
    """End to end: ``discharge`` and ``check`` stop with one line naming the model (exit 2). The old
    code: discharge proved 20 obligations and, with the library's matmul artifact beside them (one
    of the model's node classes is the library's), check said "172 checked, 0 failed", exit 0."""
    proj = _project(tmp_path, replace=True)
    (proj / "proofs").mkdir()
    shutil.copy(LIB / "autograd.matmul.g027402e6cc.json", proj / "proofs")
    for cmd in ("discharge", "check"):
        got = _proofs(proj, cmd)
        assert got.returncode == 2, (cmd, got.stdout, got.stderr)
        assert "@verified model GP" in got.stderr and "recorded backward's mask" in got.stderr
        assert "0 failed" not in got.stdout


def test_proofs_check_the_shipped_gradient_penalty(tmp_path):
    """With torchlean's own rules the same model discharges and checks (exit 0), its where node
    proved for every mask; the runtime matches torch at every mask (test above)."""
    proj = _project(tmp_path, replace=False)
    got = _proofs(proj, "discharge")
    assert got.returncode == 0, got.stdout + got.stderr
    got = _proofs(proj, "check")
    assert got.returncode == 0 and " 0 failed" in got.stdout, got.stdout + got.stderr
    got = _proofs(proj, "show")
    (line,) = [ln for ln in got.stdout.splitlines() if ln.split()[1:2] == ["model.GP"]]
    assert line.startswith("checked")
    assert "every shape and every mask" in got.stdout


WRAPPED = '''
import torchlean as tl
from torchlean.runtime import rules

_own = rules.RULES["tanh"]


def tanh_fwd(xp, x):
    return _own.forward(xp, x)


def tanh_vjp(xp, g, out, x):
    return _own.vjp(xp, g, out, x)


rules.RULES["tanh"] = rules.Rule("tanh", tanh_fwd, tanh_vjp)   # torchlean's tanh, wrapped


@tl.verified(input_shape=(1, 2))
class Pen(tl.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = tl.nn.Linear(2, 3), tl.nn.Linear(3, 1)

    def forward(self, x):
        y = self.l2(self.l1(x).tanh())
        (gx,) = tl.autograd.grad(y.sum(), x, create_graph=True)
        return (gx * gx).sum(dim=1, keepdim=True)
'''


def test_a_node_class_shared_with_the_library_checks(tmp_path):
    """A project replacing a rule (here by a wrapper of torchlean's own tanh) plans the library's
    obligations too; a model node whose obligation is one of them (the general matmul class) was
    written to the package's library only, and the old check rejected the model ("node obligation
    autograd.matmul.g... is missing"). It is replayed from the library now: exit 0."""
    (tmp_path / "pyproject.toml").write_text('[tool.torchlean]\nproofs = "proofs"\nmodules = ["wrap44"]\n')
    (tmp_path / "wrap44.py").write_text(textwrap.dedent(WRAPPED))
    got = _proofs(tmp_path, "discharge")
    assert got.returncode == 0, got.stdout + got.stderr
    got = _proofs(tmp_path, "check")
    assert got.returncode == 0 and " 0 failed" in got.stdout, got.stdout + got.stderr
    assert not (tmp_path / "proofs" / "autograd.matmul.g027402e6cc.json").exists()
    assert (LIB / "autograd.matmul.g027402e6cc.json").exists()
