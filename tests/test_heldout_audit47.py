"""Audit audit47: the eager runtime's autograd plumbing against PyTorch (the reference).

The proofs cover each VJP rule and their composition; what ``backward`` does with the cotangents
afterwards (which array a leaf keeps as ``.grad``, of which dtype), the compiled step's ``.grad``
arrays, Python-number promotion in the operators and the optimizers' updates are runtime code,
checked here against torch: values, gradients, gradient dtypes and whether two ``.grad``s share
memory (torch never gives two leaves one gradient buffer)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import torchlean as tl
from torchlean.runtime.compiled import CompiledStep

torch = pytest.importorskip("torch")

F32, F64 = tl.float32, tl.float64


def _pair(values, dtype=np.float32):
    arr = np.asarray(values, dtype=dtype)
    return (tl.tensor(arr, dtype=F32 if dtype == np.float32 else F64, requires_grad=True),
            torch.tensor(arr, requires_grad=True))


def _no_shared(*leaves):
    for p, q in itertools.combinations(leaves, 2):
        assert not np.shares_memory(p.grad.data, q.grad.data)


# -- aliasing of .grad ---------------------------------------------------------------------
def test_add_gives_each_leaf_its_own_grad():
    a, ta = _pair([1.0, 2.0])
    b, tb = _pair([3.0, 4.0])
    x = [1.0, -2.0]
    (tl.tensor(x) * (a + b)).sum().backward()
    (torch.tensor(x) * (ta + tb)).sum().backward()
    _no_shared(a, b)
    a.grad.data *= 0.5
    ta.grad.data *= 0.5
    np.testing.assert_array_equal(b.grad.data, tb.grad.numpy())
    np.testing.assert_array_equal(a.grad.data, ta.grad.numpy())


def test_reshape_and_transpose_views_are_not_shared():
    a, ta = _pair([[1.0, 2.0, 3.0]])
    b, tb = _pair([1.0, 2.0, 3.0])
    c, tc = _pair([[1.0], [2.0], [3.0]])
    (a.reshape(3) + b + c.transpose(0, 1).reshape(3)).sum().backward()
    (ta.reshape(3) + tb + tc.transpose(0, 1).reshape(3)).sum().backward()
    _no_shared(a, b, c)
    b.grad.data[0] = 7.0
    tb.grad.data[0] = 7.0
    for p, t in ((a, ta), (b, tb), (c, tc)):
        np.testing.assert_array_equal(p.grad.data, t.grad.numpy())


def test_backward_gradient_argument_is_not_kept():
    a, ta = _pair([1.0, 2.0])
    v = tl.tensor([5.0, 6.0])
    (a + 0.0).backward(v)
    (ta + 0.0).backward(torch.tensor([5.0, 6.0]))
    assert not np.shares_memory(a.grad.data, v.data)
    v.data[0] = 100.0
    np.testing.assert_array_equal(a.grad.data, ta.grad.numpy())


def test_scalar_seed_shared_through_add():
    a, ta = _pair(2.0)
    b, tb = _pair(3.0)
    (a + b).backward()
    (ta + tb).backward()
    _no_shared(a, b)
    a.grad.data[...] = 9.0
    assert b.grad.item() == tb.grad.item() == 1.0


def test_compiled_step_grads_not_shared():
    class M(tl.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = tl.nn.Parameter(tl.tensor([1.0, 2.0]))
            self.b = tl.nn.Parameter(tl.tensor([3.0, 4.0]))

        def forward(self, x):
            return x * (self.a + self.b)

    m = M()
    step = CompiledStep(m, lambda o, y: ((o - y) ** 2).sum())
    x, y = tl.tensor([1.0, -1.0]), tl.tensor([0.5, 0.0])
    for _ in range(2):
        step(x, y)
    _no_shared(m.a, m.b)
    ta = torch.tensor([1.0, 2.0], requires_grad=True)
    tb = torch.tensor([3.0, 4.0], requires_grad=True)
    ((torch.tensor([1.0, -1.0]) * (ta + tb) - torch.tensor([0.5, 0.0])) ** 2).sum().backward()
    m.a.grad.data *= 0.5
    np.testing.assert_allclose(m.b.grad.data, tb.grad.numpy(), rtol=1e-6)


# -- gradient dtypes -----------------------------------------------------------------------
def test_grad_dtype_is_the_leafs_dtype_under_promotion():
    a, ta = _pair([1.0, 2.0])  # float32
    b, tb = _pair([3.0, 4.0], np.float64)
    (a * b).sum().backward()
    (ta * tb).sum().backward()
    assert a.grad.dtype == np.float32 and ta.grad.dtype == torch.float32
    assert b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.data, ta.grad.numpy(), rtol=1e-6)


def test_grad_dtype_with_float64_gradient_argument():
    a, ta = _pair([1.0, 2.0])
    (a * 3.0).backward(tl.tensor([1.0, 2.0], dtype=F64))
    (ta * 3.0).backward(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert a.grad.dtype == np.float32 and ta.grad.dtype == torch.float32
    np.testing.assert_array_equal(a.grad.data, ta.grad.numpy())


def test_accumulation_keeps_dtype_and_sums():
    a, ta = _pair([1.0, 2.0])
    w = np.array([0.5, 0.25])
    for _ in range(2):  # no zero_grad in between: the grads add up
        (a * tl.tensor(w, dtype=F64)).sum().backward()
        (ta * torch.tensor(w)).sum().backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad.data, ta.grad.numpy())


# -- Python numbers in the operators ---------------------------------------------------------
@pytest.mark.parametrize("expr", [
    lambda t: t * 2.5, lambda t: 2.5 * t, lambda t: t + 0.5, lambda t: 1.5 - t, lambda t: t - 0.25,
    lambda t: t / 0.5,
])
def test_integer_tensor_with_python_float(expr):
    out = expr(tl.tensor([1, 2, -3]))
    ref = expr(torch.tensor([1, 2, -3]))
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out.data, ref.numpy(), rtol=1e-6)


@pytest.mark.parametrize("expr", [lambda t: t * 2, lambda t: t + 1, lambda t: 3 * t])
def test_bool_tensor_with_python_int(expr):
    out = expr(tl.tensor([True, False]))
    ref = expr(torch.tensor([True, False]))
    np.testing.assert_array_equal(out.data, ref.numpy())
    assert tl.tensor([True, False]).clone().dtype == np.bool_


# -- random graphs ---------------------------------------------------------------------------
def _graph(rng, lib, leaves):
    """One random graph over ``leaves`` (shapes broadcastable to (3, 4)); ``lib`` is tl or torch."""
    pool = list(leaves)
    ops = rng.integers(0, 10, size=12)
    picks = rng.integers(0, 1000, size=(12, 2))
    for op, (i, j) in zip(ops, picks):
        x, y = pool[i % len(pool)], pool[j % len(pool)]
        if op == 0:
            z = x + y
        elif op == 1:
            z = x * y
        elif op == 2:
            z = x - y * 0.5
        elif op == 3:
            z = x / (y * y + 1.0)
        elif op == 4:
            z = x.tanh() * y
        elif op == 5:
            z = (x + y).sum(-1, keepdim=True) if (x + y).ndim >= 1 else x + y
        elif op == 6:
            z = (x * y).mean(0, keepdim=True) if (x * y).ndim == 2 else x * y
        elif op == 7:
            w = x + y
            z = w.expand(3, 4).reshape(4, 3).transpose(0, 1) if w.ndim >= 1 else w
        elif op == 8:
            w = (x * y).expand(3, 4)
            z = w[:, 1:2] + w[0:1, ::2].sum(1, keepdim=True)
        else:
            z = (x - y).amax(1, keepdim=True) if (x - y).ndim == 2 else x.sigmoid()
        pool.append(z)
    out = pool[-1].expand(3, 4) * 0.5
    for t in pool[len(leaves):-1]:
        out = out + t
    return out


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_against_torch(seed):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (3, 1), (1, 4), ()]
    dtypes = [np.float32, np.float64]
    specs = [(shapes[k], dtypes[rng.integers(0, 2)]) for k in rng.permutation(5)[:4]]
    vals = [rng.standard_normal(s).astype(d) for s, d in specs]
    ours = [tl.tensor(v, dtype=F32 if v.dtype == np.float32 else F64, requires_grad=True) for v in vals]
    ref = [torch.tensor(v, requires_grad=True) for v in vals]
    gout = rng.standard_normal((3, 4))
    for _ in range(2):  # twice, without zero_grad: accumulation
        o = _graph(np.random.default_rng(seed + 1000), tl, ours)
        r = _graph(np.random.default_rng(seed + 1000), torch, ref)
        np.testing.assert_allclose(o.data, r.detach().numpy(), rtol=1e-5, atol=1e-5)
        o.backward(tl.tensor(gout, dtype=o.dtype))
        r.backward(torch.tensor(gout, dtype=r.dtype))
    for p, t in zip(ours, ref, strict=True):
        if t.grad is None:
            assert p.grad is None
            continue
        assert p.grad.dtype == np.dtype(str(t.grad.dtype).removeprefix("torch."))
        np.testing.assert_allclose(p.grad.data, t.grad.numpy(), rtol=1e-4, atol=1e-4)
    _no_shared(*[p for p in ours if p.grad is not None])


# -- optimizers, 5 steps -----------------------------------------------------------------------
OPTIMS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.05, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
]


@pytest.mark.parametrize("name,kw", OPTIMS)
def test_optimizer_five_steps_against_torch(name, kw):
    rng = np.random.default_rng(7)
    w0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    x = rng.standard_normal((5, 3))
    w, tw = _pair(w0, np.float64)
    b, tb = _pair(b0, np.float64)
    opt = getattr(tl.optim, name)([w, b], **kw)
    topt = getattr(torch.optim, name)([tw, tb], **kw)
    for _ in range(5):
        opt.zero_grad()
        topt.zero_grad()
        ((tl.tensor(x, dtype=F64) @ w + b).tanh() * (w.sum() + b)).sum().backward()  # w and b meet in an add
        ((torch.tensor(x) @ tw + tb).tanh() * (tw.sum() + tb)).sum().backward()
        opt.step()
        topt.step()
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=1e-6, atol=1e-9)


def test_compiled_step_grads_survive_the_next_step():
    """A ``.grad`` kept from one compiled step is not overwritten by the next (eager and torch
    leave the old gradient tensor alone when ``zero_grad`` sets grads to None)."""
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(3, 4), tl.nn.ReLU(), tl.nn.Linear(4, 1))
    step = CompiledStep(model, lambda o, y: ((o - y) ** 2).mean())
    rng = np.random.default_rng(0)
    x1, x2 = tl.tensor(rng.standard_normal((5, 3))), tl.tensor(rng.standard_normal((5, 3)))
    y = tl.tensor(rng.standard_normal((5, 1)))
    step(x1, y)
    kept = [p.grad for p in model.parameters()]
    before = [g.data.copy() for g in kept]
    step(x2, y)
    for g, b in zip(kept, before, strict=True):
        np.testing.assert_array_equal(g.data, b)
    _no_shared(*model.parameters())


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError):
        torch.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError):
        tl.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError):
        tl.tensor([True]).requires_grad_()
    t = tl.tensor([1.0], requires_grad=True)
    assert t.requires_grad and not tl.tensor([1]).requires_grad_(False).requires_grad


def test_autograd_grad_dtype_is_the_inputs():
    a, ta = _pair([1.0, 2.0])
    b, tb = _pair([3.0, 4.0], np.float64)
    (ga,) = tl.autograd.grad((a * b).sum(), [a])
    (tga,) = torch.autograd.grad((ta * tb).sum(), [ta])
    assert ga.dtype == np.float32 and tga.dtype == torch.float32
    np.testing.assert_array_equal(ga.data, tga.numpy())


def test_pow_zero_exponent_gradient_at_zero():
    """``x**0`` is constant: torch's gradient is 0 everywhere, also at x = 0 (the general formula
    ``0 * 0**-1`` is nan there), e.g. in a polynomial ``sum(c[k] * x**k)``."""
    vals = np.array([0.0, 2.0, -1.5])
    x, tx = _pair(vals, np.float64)
    c = [0.5, -1.0, 2.0]
    sum((x ** k) * c[k] for k in range(3)).sum().backward()
    sum((tx ** k) * c[k] for k in range(3)).sum().backward()
    assert np.isfinite(x.grad.data).all()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-12)
    (g,) = tl.autograd.grad((x ** 0).sum(), [x], create_graph=True)
    np.testing.assert_array_equal(g.data, np.zeros(3))
