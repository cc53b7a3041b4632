"""PyTorch habits on tensors, each checked against torch (CPU) as the reference: values, dtypes and
shapes of conversions, constructors, argmax/argmin, max/min over a dim, cat/stack."""

import numpy as np
import pytest

import torchlean as tl
import torchlean.nn.functional as F

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _same(ours, theirs, exact=True):
    """Same shape, dtype (by name) and values."""
    a, b = ours.numpy(), theirs.detach().numpy()
    assert a.shape == b.shape, (a.shape, b.shape)
    assert str(a.dtype) == str(b.dtype).replace("torch.", ""), (a.dtype, b.dtype)
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


X = [[1.0, 5.0, 2.0, 5.0], [7.0, 0.0, 7.0, -1.0], [-3.0, -3.0, 2.5, 0.0]]


@pytest.mark.parametrize("value", [2.5, -3.7, 0.0, 1e-3])
@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_python_scalar_conversions_like_torch(value, shape):
    ours = tl.tensor(np.full(shape, value))
    theirs = torch.tensor(np.full(shape, value, dtype=np.float32))
    assert float(ours) == float(theirs)
    assert int(ours) == int(theirs)  # truncation toward zero
    assert bool(ours) == bool(theirs)
    assert ours.item() == theirs.item() and type(ours.item()) is type(theirs.item())


def test_loss_converts_with_float():
    x = tl.tensor([[0.5, -1.0]], requires_grad=True)
    loss = F.mse_loss(x, tl.zeros(1, 2))
    assert float(loss) == pytest.approx(0.625)
    assert [0, 1, 2][tl.tensor(1)] == 1  # __index__ on an integer tensor
    with pytest.raises(TypeError):
        [0, 1][tl.tensor(1.0)]


def test_multi_element_conversions_fail_like_torch():
    t, tt = tl.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])
    for conv in (float, int):
        with pytest.raises(ValueError):
            conv(tt)
        with pytest.raises(ValueError, match="only one element"):
            conv(t)
    with pytest.raises(RuntimeError):
        bool(tt)
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    with pytest.raises(ValueError):
        t.item()


@pytest.mark.parametrize("fn", ["argmax", "argmin"])
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_argmax_argmin_like_torch(fn, dim, keepdim):
    ours = getattr(tl.tensor(X), fn)(dim=dim, keepdim=keepdim)
    theirs = getattr(torch.tensor(X), fn)(dim=dim, keepdim=keepdim)
    _same(ours, theirs)  # ties (5, 5 and 7, 7): the first index, like torch
    _same(getattr(tl, fn)(tl.tensor(X), dim, keepdim), theirs)


@pytest.mark.parametrize("fn", ["max", "min"])
@pytest.mark.parametrize("dim", [None, 0, 1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_over_a_dim_return_values_and_indices(fn, dim, keepdim):
    t, tt = tl.tensor(X), torch.tensor(X)
    if dim is None:
        _same(getattr(t, fn)(), getattr(tt, fn)())
        return
    ours, theirs = getattr(t, fn)(dim, keepdim), getattr(tt, fn)(dim, keepdim)
    _same(ours.values, theirs.values)
    _same(ours.indices, theirs.indices)
    values, indices = ours  # unpacks like torch's return type
    _same(values, theirs[0])


def test_amin_gradient_matches_torch_without_ties():
    data = [[1.0, 5.0, 2.0], [7.0, 0.5, 3.0]]
    t = tl.tensor(data, requires_grad=True)
    tt = torch.tensor(data, requires_grad=True)
    (t.amin(1) * tl.tensor([2.0, 3.0])).sum().backward()
    (tt.amin(1) * torch.tensor([2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), tt.grad.numpy())


@pytest.mark.parametrize("method", ["long", "int", "float", "double", "bool"])
def test_dtype_conversions_like_torch(method):
    data = [[2.7, -2.7, 0.0], [1e3, -0.5, 3.0]]
    _same(getattr(tl.tensor(data), method)(), getattr(torch.tensor(data), method)())
    ints = [[3, -4, 0]]
    _same(getattr(tl.tensor(ints), method)(), getattr(torch.tensor(ints), method)())


def test_integer_conversion_drops_requires_grad():
    t = tl.tensor([1.5, 2.5], requires_grad=True)
    assert not t.long().requires_grad and t.double().requires_grad


def test_random_constructors_shapes_dtypes_and_seeding():
    for name in ("randn", "rand"):
        fn, tfn = getattr(tl, name), getattr(torch, name)
        for args in [(2, 3), ((2, 3),), (4,)]:
            ours, theirs = fn(*args), tfn(*args)
            assert ours.shape == tuple(theirs.shape) and str(ours.dtype) == "float32"
        assert fn(2, dtype="float64").dtype == np.float64
        tl.manual_seed(5)
        a = fn(1000)
        tl.manual_seed(5)
        assert np.array_equal(a.numpy(), fn(1000).numpy())
        assert not np.array_equal(a.numpy(), fn(1000).numpy())
        assert fn(3, requires_grad=True).requires_grad
    tl.manual_seed(0)
    n, u = tl.randn(200_000).numpy(), tl.rand(200_000).numpy()
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


@pytest.mark.parametrize("size,value", [((2, 3), 3), ((2,), 2.5), ((1, 2), True), (4, -1), ((), 7.0)])
def test_full_like_torch(size, value):
    _same(tl.full(size, value), torch.full(size if isinstance(size, tuple) else (size,), value))


@pytest.mark.parametrize("args", [(5,), (2, 9), (2, 9, 3), (0, 1, 0.1), (-1.5, 2.0, 0.25), (10, 0, -3),
                                  (1.0, 4), (0, 0)])
def test_arange_like_torch(args):
    _same(tl.arange(*args), torch.arange(*args))


def test_arange_refuses_what_torch_refuses():
    for args in [(3, 1), (1, 3, -1), (0, 2, 0)]:
        with pytest.raises(RuntimeError):
            torch.arange(*args)
        with pytest.raises(ValueError):
            tl.arange(*args)


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 7, 10, 11, 100, 1001])
@pytest.mark.parametrize("ends", [(-1, 1), (0, 1), (0.1, 3.7), (3, -2.2), (-5, 2.5)])
def test_linspace_bit_for_bit_like_torch(steps, ends):
    _same(tl.linspace(*ends, steps), torch.linspace(*ends, steps))
    _same(tl.linspace(*ends, steps, dtype="float64"), torch.linspace(*ends, steps, dtype=torch.float64),
          exact=False)


def test_zeros_ones_tensor_signatures_like_torch():
    for name in ("zeros", "ones"):
        _same(getattr(tl, name)(2, 3), getattr(torch, name)(2, 3))
        _same(getattr(tl, name)((2, 3)), getattr(torch, name)((2, 3)))
        _same(getattr(tl, name)([4], dtype=tl.float64), getattr(torch, name)([4], dtype=torch.float64))
        like = getattr(tl, f"{name}_like")(tl.tensor([[1, 2]]))
        _same(like, getattr(torch, f"{name}_like")(torch.tensor([[1, 2]])))
    _same(tl.tensor([[1.5, 2]], device=None), torch.tensor([[1.5, 2]]))
    _same(tl.tensor([1, 2]), torch.tensor([1, 2]))
    _same(tl.tensor([True, False]), torch.tensor([True, False]))
    assert tl.tensor(3.0, requires_grad=True).requires_grad


def test_from_numpy_keeps_dtype_and_shares_memory():
    for dt in (np.float64, np.float32, np.int64, np.int32):
        a = np.arange(6, dtype=dt).reshape(2, 3)
        t = tl.from_numpy(a)
        _same(t, torch.from_numpy(a))
        a[0, 0] = 9
        assert t.numpy()[0, 0] == 9  # the same memory, like torch.from_numpy
    with pytest.raises(TypeError):
        tl.from_numpy([1, 2])


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_stack_and_cat_like_torch_with_gradients(dim):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    ours = [tl.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    s, ts = tl.stack(ours, dim), torch.stack(theirs, dim)
    _same(s, ts)
    w = rng.standard_normal(tuple(ts.shape)).astype(np.float32)
    (s * tl.tensor(w)).sum().backward()
    (ts * torch.tensor(w)).sum().backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    if dim != 2:
        _same(tl.cat(ours, dim), torch.cat(theirs, dim))
    with pytest.raises(Exception, match="equal shape"):
        tl.stack([ours[0], tl.zeros(3, 2)])


def test_tensor_method_forms_like_torch():
    t, tt = tl.tensor(X), torch.tensor(X)
    _same(t.add(1.5).mul(2).sub(t).div(4).neg(), tt.add(1.5).mul(2).sub(tt).div(4).neg())
    _same(t.abs().pow(2), tt.abs().pow(2))
    _same(t.maximum(tl.zeros(3, 4)), tt.maximum(torch.zeros(3, 4)))
    _same(t.where(t > 0, tl.zeros(3, 4)), tt.where(tt > 0, torch.zeros(3, 4)))
    _same(t.expand(2, 3, 4), tt.expand(2, 3, 4))
    _same(t.view(4, 3).permute(1, 0).reshape(-1).unsqueeze(0),
          tt.view(4, 3).permute(1, 0).reshape(-1).unsqueeze(0))


@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": 0, "keepdim": True}, {"dim": 1, "unbiased": False},
                                {"dim": (0, 1), "correction": 0}, {"correction": 2}])
def test_var_like_torch(kw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5))
    t, tt = tl.tensor(x, dtype="float64", requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = t.var(**kw), tt.var(**kw)
    _same(y, yt, exact=False)
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-12)
    _same(F.var(t, 1, False), torch.var(tt, 1, False), exact=False)  # torch's positional order


@pytest.mark.parametrize("name", ["float32", "float64", "int64", "int32", "float", "double", "long", "int",
                                  "bool"])
def test_dtype_names_like_torch(name):
    ours = tl.zeros(2, 3, dtype=getattr(tl, name))
    theirs = torch.zeros(2, 3, dtype=getattr(torch, name))
    _same(ours, theirs)
    _same(tl.tensor([1.5, -2.5]).to(getattr(tl, name)), torch.tensor([1.5, -2.5]).to(getattr(torch, name)))


def test_builtin_abs_like_torch():
    """``abs(t)`` (torch's ``Tensor.__abs__``) raised "bad operand type for abs()" (session 34);
    its gradient is torch's too (sign, 0 at 0)."""
    v = np.array([-1.5, 0.0, 2.0], dtype=np.float32)
    t, ref = tl.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    y, yr = abs(t), abs(ref)
    assert np.array_equal(y.numpy(), yr.detach().numpy())
    y.sum().backward()
    yr.sum().backward()
    assert np.array_equal(t.grad.numpy(), ref.grad.numpy())
