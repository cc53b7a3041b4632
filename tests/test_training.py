"""Training stack: losses, data, CSV loading, checkpoints, Trainer, Auto MPG."""

from __future__ import annotations

import json

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.optim import SGD, Adam
from torchlean.optim.lr_scheduler import StepLR
from torchlean.runtime.backends import DeviceError, cuda_available
from torchlean.runtime.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from torchlean.runtime.data import DataLoader, Standardizer, TensorDataset, load_csv, train_test_split
from torchlean.runtime.tensor import Tensor
from torchlean.zoo import auto_mpg

# -- losses against PyTorch ------------------------------------------------------------------------

LOSS_CASES = [
    ("MSELoss", {}, "regression"),
    ("HuberLoss", {"delta": 0.7}, "regression"),
    ("CrossEntropyLoss", {}, "classes"),
    ("BCEWithLogitsLoss", {}, "binary"),
]


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "kw", "kind"), LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_modules_match_torch(name, kw, kind, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    if kind == "classes":
        x, y = rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, size=6)
    elif kind == "binary":
        x, y = rng.standard_normal((6, 3)) * 5, rng.uniform(0, 1, size=(6, 3))
    else:
        x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    xt = Tensor(x.copy(), requires_grad=True)
    ours = getattr(nn, name)(reduction=reduction, **kw)(xt, Tensor(y.copy()))
    xr = torch.tensor(x.copy(), requires_grad=True)
    ref = getattr(torch.nn, name)(reduction=reduction, **kw)(xr, torch.tensor(y.copy()))
    np.testing.assert_allclose(ours.numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    seed = rng.standard_normal(ref.shape)
    ours.backward(Tensor(seed.copy()) if reduction == "none" else None)
    ref.backward(torch.tensor(seed) if reduction == "none" else None)
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_loss_rejects_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


@pytest.mark.torch
@pytest.mark.parametrize("bad", [[0, -1], [0, 4], [0.0, 1.5]])
def test_cross_entropy_refuses_what_torch_refuses(bad):
    """A class index outside [0, C) (or a fraction) is an error in torch; here gather would wrap -1
    round to the last class and truncate 1.5 to class 1: a silently wrong loss."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 4))
    with pytest.raises((IndexError, RuntimeError)):
        torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(bad))
    with pytest.raises(IndexError, match="class index"):
        nn.CrossEntropyLoss()(Tensor(x), Tensor(np.array(bad)))
    good = np.array([0, 3])  # the edges of the range pass, with torch's value
    ref = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(good))
    ours = nn.CrossEntropyLoss()(Tensor(x), Tensor(good))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-12)


# -- data ------------------------------------------------------------------------------------------


def _epoch(loader: DataLoader) -> list[list[int]]:
    return [b.tolist() for b in loader.batch_indices()]


def test_dataloader_is_reproducible_and_covers_every_row():
    ds = TensorDataset(np.arange(10.0).reshape(10, 1), np.arange(10))
    a = DataLoader(ds, batch_size=3, shuffle=True, seed=7)
    b = DataLoader(ds, batch_size=3, shuffle=True, seed=7)
    ea, eb = [_epoch(a), _epoch(a)], [_epoch(b), _epoch(b)]
    assert ea == eb
    assert ea[0] != ea[1]  # a new permutation every epoch
    assert sorted(i for batch in ea[0] for i in batch) == list(range(10))
    assert [len(x) for x in ea[0]] == [3, 3, 3, 1] and len(a) == 4
    assert _epoch(DataLoader(ds, batch_size=3, shuffle=True, seed=8)) != ea[0]
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 1) and y.tolist() == [0, 1, 2, 3]


def test_dataloader_drop_last_and_global_seed():
    ds = TensorDataset(np.zeros((10, 2)))
    loader = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]
    tl.manual_seed(3)
    first = _epoch(DataLoader(ds, batch_size=5, shuffle=True))
    tl.manual_seed(3)
    assert _epoch(DataLoader(ds, batch_size=5, shuffle=True)) == first


def test_tensor_dataset_checks_lengths():
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))


def test_split_is_seeded_and_disjoint():
    x = np.arange(20.0)
    tr, te = train_test_split(x, test_fraction=0.25, seed=1)
    tr2, te2 = train_test_split(x, test_fraction=0.25, seed=1)
    assert np.array_equal(te, te2) and len(te) == 5 and len(tr) == 15
    assert sorted(np.concatenate([tr, te]).tolist()) == x.tolist()


def _write_csv(path, text):
    path.write_text(text)
    return path


def test_load_csv_drops_or_imputes_missing_values(tmp_path):
    rows = ["a,b,label"] + [f"{i},{2 * i},{i % 3}" for i in range(20)]
    rows[3] = "2,?,2"  # missing feature
    rows[6] = "5,10,"  # missing target: always dropped
    rows[9] = "NA,16,2"
    path = _write_csv(tmp_path / "t.csv", "\n".join(rows) + "\n")
    dropped = load_csv(path, target="label", missing="drop", test_fraction=0.25, seed=0)
    assert dropped.dropped_rows == 3 and len(dropped.x_train) + len(dropped.x_test) == 17
    imputed = load_csv(path, target="label", missing="mean", test_fraction=0.25, seed=0, normalise=False)
    assert imputed.dropped_rows == 1 and len(imputed.x_train) + len(imputed.x_test) == 19
    assert not np.isnan(imputed.x_train).any() and not np.isnan(imputed.x_test).any()
    with pytest.raises(ValueError, match="missing value"):
        load_csv(path, target="label", missing="error")


def test_load_csv_normalises_with_training_statistics_only(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.normal(5.0, 3.0, size=(40, 3))
    text = "x1,x2,y\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in raw) + "\n"
    data = load_csv(_write_csv(tmp_path / "n.csv", text), target="y", columns=["x1", "x2"], seed=2)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1, atol=1e-12)
    _, te = train_test_split(raw, test_fraction=0.2, seed=2)
    tr, _ = train_test_split(raw, test_fraction=0.2, seed=2)
    expected = (te[:, :2] - tr[:, :2].mean(axis=0)) / tr[:, :2].std(axis=0)
    np.testing.assert_allclose(data.x_test, expected, rtol=1e-12)
    np.testing.assert_allclose(data.target_to_original(data.y_test), te[:, 2:], rtol=1e-12)


def test_load_csv_errors_name_the_problem(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", "a,b\n1,2\n3,hello\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: column 'b': 'hello' is not a number"):
        load_csv(path, target="b")
    with pytest.raises(ValueError, match="no column 'c'"):
        load_csv(path, target="c")


def test_standardizer_constant_column():
    s = Standardizer.fit(np.array([[1.0, 2.0], [1.0, 4.0]]))
    assert np.array_equal(s.transform(np.array([[1.0, 3.0]])), [[0.0, 0.0]])


# -- checkpoints -----------------------------------------------------------------------------------


def _trained_pair(dtype: str, steps: int = 5):
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    trainer = tl.Trainer(model, optimizer="adam", lr=0.05, dtype=dtype)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    trainer.train((x, y), steps=steps, batch_size=4, progress=False)
    return trainer, (x, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_round_trip_keeps_exact_bits(tmp_path, dtype):
    trainer, _ = _trained_pair(dtype)
    path = save_checkpoint(tmp_path / "c.npz", trainer.model, trainer.optimizer, extra={"epoch": 3})
    tl.manual_seed(99)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)
    opt = Adam(fresh.parameters(), lr=1.0)
    assert load_checkpoint(path, fresh, opt) == {"epoch": 3}
    for (k, a), (k2, b) in zip(trainer.model.state_dict().items(), fresh.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    saved, loaded = trainer.optimizer.state_dict()["state"], opt.state_dict()["state"]
    for i in saved:
        assert saved[i]["step"] == loaded[i]["step"] == 5
        assert saved[i]["exp_avg_sq"].tobytes() == loaded[i]["exp_avg_sq"].tobytes()
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was moved into place


def test_resumed_training_equals_uninterrupted(tmp_path):
    rng = np.random.default_rng(1)
    batches = [(Tensor(rng.standard_normal((4, 3))), Tensor(rng.standard_normal((4, 1)))) for _ in range(8)]

    def run(split: int | None) -> dict:
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)).to("float64")
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        for i, (x, y) in enumerate(batches):
            if i == split:
                save_checkpoint(tmp_path / "mid.npz", model, opt)
                tl.manual_seed(5)
                model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)).to("float64")
                opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
                load_checkpoint(tmp_path / "mid.npz", model, opt)
            model.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return model.state_dict()

    a, b = run(None), run(4)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_checkpoint_rejects_bad_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a torchlean checkpoint"):
        read_checkpoint(junk)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"model/w": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(CheckpointError):
        read_checkpoint(pickled)  # object arrays need pickle: refused
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "missing.npz")
    trainer, _ = _trained_pair("float32", steps=1)
    path = save_checkpoint(tmp_path / "ok.npz", trainer.model)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, trainer.model, Adam(trainer.model.parameters()))


# -- Trainer ---------------------------------------------------------------------------------------


def test_trainer_reduces_loss_and_logs(tmp_path):
    data = auto_mpg.load()
    tl.manual_seed(0)
    trainer = tl.Trainer(auto_mpg.mlp(), optimizer="adam", lr=0.01)
    before = trainer.eval(data.test())["loss"]
    log = tmp_path / "log.json"
    trained = trainer.train(data.train(), steps=60, batch_size=32, log_every=20, log_path=log, progress=False)
    after = trained.eval(data.test())["loss"]
    assert after < 0.5 * before
    doc = json.loads(log.read_text())
    assert doc["format"] == "torchlean-train-log/1" and doc["steps"] == 60
    assert [r["step"] for r in doc["records"]] == [20, 40, 60]
    assert all(set(r) == {"step", "loss", "lr", "time"} for r in doc["records"])
    assert doc["records"][-1]["loss"] < doc["records"][0]["loss"]
    pred = trained.predict(data.x_test[:3])
    assert pred.shape == (3, 1) and pred.dtype == np.float32


def test_trainer_matches_a_hand_written_loop():
    """Trainer = zero_grad, loss, backward, clip, step, scheduler.step over its seeded batches."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))
    trainer = tl.Trainer(model, optimizer="sgd", lr=0.1, dtype="float64", clip=0.5, seed=4,
                         scheduler=lambda o: StepLR(o, step_size=3, gamma=0.5))
    trainer.train((x, y), steps=12, batch_size=8, progress=False)

    tl.manual_seed(0)
    ref = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1)).to("float64")
    opt = SGD(ref.parameters(), lr=0.1)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=4)
    done = 0
    while done < 12:
        for xb, yb in loader:
            if done == 12:
                break
            ref.zero_grad()
            nn.functional.mse_loss(ref(xb), yb).backward()
            tl.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            opt.step()
            sched.step()
            done += 1
    a, b = trainer.model.state_dict(), ref.state_dict()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert trainer.optimizer.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.1 * 0.5**4


def test_trainer_classification_reports_accuracy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((120, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    tl.manual_seed(0)
    trainer = tl.Trainer(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), task="classification",
                         optimizer="adam", lr=0.05)
    trained = trainer.train((x, y), steps=100, batch_size=16, progress=False)
    assert trained.eval((x, y))["accuracy"] > 0.9


def test_trainer_rejects_bad_configuration():
    model = nn.Sequential(nn.Linear(2, 1))
    with pytest.raises(ValueError, match="unknown task"):
        tl.Trainer(model, task="ranking")
    with pytest.raises(ValueError, match="unknown backend"):
        tl.Trainer(model, backend="jit")
    with pytest.raises(ValueError, match="unknown dtype"):
        tl.Trainer(model, dtype="float16")
    with pytest.raises(ValueError, match="clip"):
        tl.Trainer(model, clip=-1.0)


def test_eval_and_predict_leave_the_model_in_the_mode_they_found():
    """Trainer.eval / predict ended in model.train() whatever the mode before: a model put in eval()
    for verification was silently back in training mode (examples/verify_api.py then bounded the
    batch-statistics BatchNorm graph, a different function from the model's)."""
    x, y = np.random.default_rng(0).uniform(size=(16, 1, 4, 4)), np.arange(16) % 2
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    trained = tl.Trainer(model, task="classification").train((x, y), steps=3, progress=False)
    assert model.training  # (training leaves it in training mode, as a torch loop does)
    model.eval()
    before = model(tl.tensor(x[:1])).numpy()
    trained.eval((x, y))
    trained.predict(x[:1])
    assert not model.training and (model(tl.tensor(x[:1])).numpy() == before).all()
    model.train()
    trained.eval((x, y))
    assert model.training


def test_trainer_refuses_labels_that_are_no_class_index():
    """Classification targets were cast with astype(int64): 1.5 trained as class 1 without a word.
    Whole float labels (a CSV's) still train, as their integer classes."""
    x = np.random.default_rng(0).standard_normal((8, 2))
    model = nn.Sequential(nn.Linear(2, 3))
    trainer = tl.Trainer(model, task="classification")
    for bad in (np.full(8, 1.5), np.full(8, np.nan), np.full(8, -1)):
        with pytest.raises(ValueError, match="class ind"):
            trainer.dataset((x, bad))
    ys = trainer.dataset((x, np.arange(8.0) % 3)).tensors[1].numpy()
    assert ys.dtype == np.int64 and ys.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


@pytest.mark.torch
def test_trainer_names_from_torch_for_a_torch_model():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="from_torch"):
        tl.Trainer(torch.nn.Sequential(torch.nn.Linear(2, 1)))
    with pytest.raises(TypeError, match="torchlean nn.Module"):
        tl.Trainer(lambda x: x)


@pytest.mark.skipif(cuda_available(), reason="this machine has a usable GPU")
def test_trainer_cuda_without_gpu_raises_device_error():
    model = nn.Sequential(nn.Linear(2, 1))
    with pytest.raises(DeviceError, match="cuda"):
        tl.Trainer(model, device="cuda")
    assert model[0].weight.device == "cpu"


def test_eager_and_compiled_are_bit_identical_after_50_steps():
    pytest.importorskip("torchlean.runtime.compiled")
    data = auto_mpg.load()
    states, losses = [], []
    for backend in ("eager", "compiled"):
        tl.manual_seed(0)
        trainer = tl.Trainer(auto_mpg.mlp(), optimizer="adam", lr=0.01, backend=backend)
        trained = trainer.train(data.train(), steps=50, batch_size=32, log_every=1, progress=False)
        states.append(trained.model.state_dict())
        losses.append([r["loss"] for r in trained.history])
    assert losses[0] == losses[1]
    assert all(states[0][k].tobytes() == states[1][k].tobytes() for k in states[0])


# -- Auto MPG --------------------------------------------------------------------------------------


def test_auto_mpg_drops_missing_rows_and_splits_deterministically():
    x, y, names, dropped = auto_mpg.read_raw()
    assert x.shape == (392, 7) and y.shape == (392, 1) and dropped == 6 and len(names) == 392
    assert not np.isnan(x).any() and names[0] == "chevrolet chevelle malibu"
    a, b = auto_mpg.load(), auto_mpg.load()
    assert np.array_equal(a.x_test, b.x_test) and a.x_train.shape == (314, 7) and a.x_test.shape == (78, 7)
    np.testing.assert_allclose(a.y_train.mean(), 0, atol=1e-12)
    assert 5 < a.target_to_original(a.y_test).min() and a.target_to_original(a.y_test).max() < 50


def test_trained_model_summary_save_and_interrupt(tmp_path, capsys):
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # what Ctrl-C would raise mid-run
        return nn.functional.mse_loss(out, y)

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((32, 2)), rng.standard_normal((32, 1))
    tl.manual_seed(0)
    trainer = tl.Trainer(nn.Sequential(nn.Linear(2, 1)), loss=loss_fn, optimizer="sgd", lr=0.1)
    log = tmp_path / "log.json"
    trained = trainer.train((x, y), steps=50, batch_size=8, log_every=2, log_path=log, progress=False)
    assert trained.interrupted and trained.steps == 4
    assert json.loads(log.read_text())["interrupted"] is True
    trained.print_summary()
    text = capsys.readouterr().out
    assert "steps: 4 (interrupted)" in text and "parameters: 3" in text
    path = trained.save(tmp_path / "m.npz")
    assert read_checkpoint(path)[2]["config"]["optimizer"] == "SGD"


def test_trainer_moves_existing_optimizer_state_and_keeps_integer_inputs():
    from torchlean.optim import Adagrad

    model = nn.Sequential(nn.Linear(2, 1))  # float32 parameters
    opt = Adagrad(model.parameters(), lr=0.1, initial_accumulator_value=0.1)  # state made now, float32
    trainer = tl.Trainer(model, optimizer=opt, dtype="float64")
    w = model[0].weight
    assert w.dtype == np.float64 and opt.state[id(w)]["sum"].dtype == np.float64
    ds = trainer.dataset((np.array([[1, 2], [3, 4]]), np.array([0.5, 1.5])))
    assert ds.tensors[0].dtype == np.int64 and ds.tensors[1].shape == (2, 1)
    assert ds.tensors[1].dtype == np.float64


def test_ctrl_c_stops_after_the_current_step():
    import os
    import signal

    calls = []

    def loss_fn(out, y):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of step 3
        return nn.functional.mse_loss(out, y)

    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((32, 2)), rng.standard_normal((32, 1))
    before = signal.getsignal(signal.SIGINT)
    trainer = tl.Trainer(nn.Sequential(nn.Linear(2, 1)), loss=loss_fn, optimizer="sgd", lr=0.1)
    trained = trainer.train((x, y), steps=50, batch_size=8, progress=False)
    assert trained.interrupted and trained.steps == 3 and trainer.steps_done == 3
    assert signal.getsignal(signal.SIGINT) is before  # the handler was put back


def test_a_second_train_call_continues_with_a_new_batch_order():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((16, 2)), rng.standard_normal((16, 1))
    seen = []

    def loss_fn(out, t):
        seen.append(t.numpy().ravel().tolist())
        return nn.functional.mse_loss(out, t)

    trainer = tl.Trainer(nn.Sequential(nn.Linear(2, 1)), loss=loss_fn, optimizer="sgd", lr=0.01)
    trainer.train((x, y), steps=2, batch_size=8, progress=False)
    trainer.train((x, y), steps=2, batch_size=8, progress=False)
    assert seen[:2] != seen[2:]


@pytest.mark.torch
def test_auto_mpg_bench_agrees_with_pytorch(capsys):
    """bench/mpg_vs_torch.py: same init, batches and Adam in PyTorch give the same test MSE."""
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "mpg_vs_torch.py"
    spec = importlib.util.spec_from_file_location("mpg_vs_torch", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--steps", "40"]) == 0
    out = capsys.readouterr().out
    ours = float(out.split("torchlean: ")[1].split()[0])
    theirs = float(out.split("PyTorch: ")[1].split()[0])
    assert abs(ours - theirs) < 1e-4 and ours < 0.5
    assert float(out.split("difference after training: ")[1].split()[0]) < 1e-4


def test_checkpoint_keeps_scheduler_state(tmp_path):
    from torchlean.optim.lr_scheduler import OneCycleLR

    def setup():
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 1)).to("float64")
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt, OneCycleLR(opt, max_lr=0.5, total_steps=20)

    model, opt, sched = setup()
    for _ in range(7):
        sched.step()
    save_checkpoint(tmp_path / "s.npz", model, opt, scheduler=sched)
    model2, opt2, sched2 = setup()
    load_checkpoint(tmp_path / "s.npz", model2, opt2, scheduler=sched2)
    for _ in range(5):
        sched.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()
        assert opt.param_groups[0]["momentum"] == opt2.param_groups[0]["momentum"]
    with pytest.raises(CheckpointError, match="StepLR"):
        load_checkpoint(tmp_path / "s.npz", model2, opt2, scheduler=StepLR(opt2, step_size=2))
