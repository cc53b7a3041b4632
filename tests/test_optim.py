"""Optimizers, schedulers and gradient clipping against PyTorch (float64, same params and grads)."""

from __future__ import annotations

import numpy as np
import pytest

from torchlean.nn import Parameter
from torchlean.optim import SGD, Adagrad, Adam, AdamW, RMSprop, make_optimizer
from torchlean.optim.lr_scheduler import CosineAnnealingLR, LinearLR, OneCycleLR, StepLR, linear_warmup
from torchlean.runtime.clip import clip_grad_norm_, clip_grad_value_
from torchlean.runtime.tensor import Tensor

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SHAPES = [(3, 4), (4,), (2, 2, 3)]
STEPS = 20

OPTIMIZER_CASES = [
    ("SGD", SGD, {"lr": 0.1}),
    ("SGD", SGD, {"lr": 0.05, "momentum": 0.9}),
    ("SGD", SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", SGD, {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    ("Adam", Adam, {"lr": 0.01}),
    ("Adam", Adam, {"lr": 0.02, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", Adam, {"lr": 0.02, "amsgrad": True}),
    ("AdamW", AdamW, {"lr": 0.01}),
    ("AdamW", AdamW, {"lr": 0.03, "weight_decay": 0.2, "amsgrad": True}),
    ("RMSprop", RMSprop, {"lr": 0.01}),
    ("RMSprop", RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.05}),
    ("RMSprop", RMSprop, {"lr": 0.005, "alpha": 0.9, "eps": 1e-4, "momentum": 0.5}),
    ("Adagrad", Adagrad, {"lr": 0.1}),
    ("Adagrad", Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1,
                          "initial_accumulator_value": 0.5, "eps": 1e-6}),
]


def _pair(rng: np.random.Generator) -> tuple[list[Parameter], list]:
    arrays = [rng.standard_normal(s) for s in SHAPES]
    ours = [Parameter(a.copy()) for a in arrays]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    return ours, ref


def _set_grads(ours: list[Parameter], ref: list, rng: np.random.Generator) -> None:
    for p, q in zip(ours, ref):
        g = rng.standard_normal(p.shape)
        p.grad = Tensor(g.copy())
        q.grad = torch.tensor(g.copy())


def _assert_close(ours: list[Parameter], ref: list) -> None:
    for p, q in zip(ours, ref):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("name", "cls", "kw"), OPTIMIZER_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(OPTIMIZER_CASES)])
def test_optimizer_matches_torch(name, cls, kw):
    rng = np.random.default_rng(1)
    ours, ref = _pair(rng)
    opt, topt = cls(ours, **kw), getattr(torch.optim, name)(ref, **kw, foreach=False)
    for _ in range(STEPS):
        _set_grads(ours, ref, rng)
        opt.step()
        topt.step()
    _assert_close(ours, ref)
    moved = np.abs(ours[0].numpy() - np.asarray(_pair(np.random.default_rng(1))[0][0].numpy())).max()
    assert moved > 1e-3  # the comparison is not vacuous: the parameters did change


@pytest.mark.parametrize(("name", "cls", "kw"), [OPTIMIZER_CASES[2], OPTIMIZER_CASES[7], OPTIMIZER_CASES[11],
                                                 OPTIMIZER_CASES[14]])
def test_state_dict_resume_matches_uninterrupted(name, cls, kw):
    """Stop after 10 steps, rebuild the optimizer from its state_dict, go on: same as torch throughout."""
    rng = np.random.default_rng(2)
    ours, ref = _pair(rng)
    opt, topt = cls(ours, **kw), getattr(torch.optim, name)(ref, **kw, foreach=False)
    for i in range(STEPS):
        if i == 10:
            saved = opt.state_dict()
            opt = cls(ours, **{**kw, "lr": 123.0})  # wrong lr: must be overwritten by the load
            opt.load_state_dict(saved)
        _set_grads(ours, ref, rng)
        opt.step()
        topt.step()
    _assert_close(ours, ref)


def test_param_groups_have_their_own_lr():
    rng = np.random.default_rng(3)
    ours, ref = _pair(rng)
    opt = SGD([{"params": ours[:1], "lr": 0.5}, {"params": ours[1:]}], lr=0.01, momentum=0.9)
    topt = torch.optim.SGD([{"params": ref[:1], "lr": 0.5}, {"params": ref[1:]}], lr=0.01, momentum=0.9)
    for _ in range(5):
        _set_grads(ours, ref, rng)
        opt.step()
        topt.step()
    _assert_close(ours, ref)


def test_zero_grad_and_float32_dtype_kept():
    p = Parameter(np.ones(3, dtype=np.float32))
    p.grad = Tensor(np.full(3, 0.5, dtype=np.float32))
    opt = Adam([p], lr=0.1)
    opt.step()
    assert p.dtype == np.float32 and opt.state[id(p)]["exp_avg"].dtype == np.float32
    opt.zero_grad()
    assert p.grad is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([Parameter(np.zeros(2))], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", [Parameter(np.zeros(2))])


# -- schedulers ---------------------------------------------------------------------------------

SCHEDULER_CASES = [
    ("StepLR", StepLR, {"step_size": 4, "gamma": 0.5}, "SGD"),
    ("CosineAnnealingLR", CosineAnnealingLR, {"T_max": 7, "eta_min": 0.001}, "SGD"),
    ("LinearLR", LinearLR, {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 8}, "SGD"),
    ("LinearLR", LinearLR, {}, "Adam"),
    ("OneCycleLR", OneCycleLR, {"max_lr": 0.3, "total_steps": 30}, "SGD"),
    ("OneCycleLR", OneCycleLR, {"max_lr": 0.3, "total_steps": 30, "anneal_strategy": "linear",
                                "three_phase": True}, "Adam"),
]


@pytest.mark.parametrize(("name", "cls", "kw", "opt_name"), SCHEDULER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SCHEDULER_CASES)])
def test_scheduler_matches_torch(name, cls, kw, opt_name):
    rng = np.random.default_rng(4)
    ours, ref = _pair(rng)
    okw = {"lr": 0.1, "momentum": 0.9} if opt_name == "SGD" else {"lr": 0.1}
    opt = {"SGD": SGD, "Adam": Adam}[opt_name](ours, **okw)
    topt = getattr(torch.optim, opt_name)(ref, **okw)
    sched, tsched = cls(opt, **kw), getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    key = "momentum" if opt_name == "SGD" else "betas"
    for _ in range(29):
        assert sched.get_last_lr() == tsched.get_last_lr()
        assert opt.param_groups[0][key] == topt.param_groups[0][key]
        _set_grads(ours, ref, rng)
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    _assert_close(ours, ref)


def test_linear_warmup_reaches_the_base_rate():
    opt = SGD([Parameter(np.zeros(2))], lr=0.2)
    sched = linear_warmup(opt, warmup_steps=4, start_factor=0.25)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(6):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == pytest.approx(0.05) and lrs[4:] == pytest.approx([0.2] * 3)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5]))


# -- clipping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    rng = np.random.default_rng(5)
    ours, ref = _pair(rng)
    _set_grads(ours, ref, rng)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type=norm_type)
    assert total.item() == pytest.approx(ttotal.item(), rel=1e-13)
    for p, q in zip(ours, ref):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_clip_does_not_touch_shared_gradient_arrays():
    """backward may give two leaves one cotangent array; clipping one must not change the other."""
    shared = np.array([3.0, 4.0])
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    a.grad, b.grad = Tensor(shared), Tensor(shared)
    clip_grad_norm_([a], 1.0)
    assert np.array_equal(b.grad.numpy(), [3.0, 4.0])


def test_clip_grad_value_matches_torch():
    rng = np.random.default_rng(6)
    ours, ref = _pair(rng)
    _set_grads(ours, ref, rng)
    clip_grad_value_(ours, 0.3)
    torch.nn.utils.clip_grad_value_(ref, 0.3)
    for p, q in zip(ours, ref):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
