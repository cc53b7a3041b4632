"""The README's main job, and @verified on a model that has been trained."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn

pytestmark = pytest.mark.solver


@pytest.fixture(autouse=True)
def _restore_sources():
    """@verified registers obligation sources globally; keep them out of the other tests."""
    from torchlean.proofs.obligation import SOURCES

    saved = dict(SOURCES)
    yield
    SOURCES.clear()
    SOURCES.update(saved)


def test_demo_checks_every_claim(tmp_path, capsys):
    from torchlean.__main__ import main

    assert main(["demo", "--out", str(tmp_path), "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "all claims checked" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["autograd"] == ["proved"] and summary["failures"] == 0
    assert summary["epsilon"] >= summary["observed"] > 0
    assert (tmp_path / "proofs" / "model.auto_mpg_tanh.json").exists()


def test_verified_model_after_training_is_left_intact_and_proved():
    from torchlean.proofs.discharge import discharge
    from torchlean.proofs.obligation import SOURCES
    from torchlean.proofs.verified import verified

    tl.manual_seed(3)
    m = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
    x = tl.tensor(np.ones((4, 3)))
    ((m(x) - 1.0) ** 2).mean().backward()  # leaves numeric .grad on every parameter
    before = {k: v.copy() for k, v in m.state_dict().items()}
    verified(m, name="trained_small", input_shape=(1, 3))
    obs = list(SOURCES["verified.model.trained_small"]())
    reports = discharge(obs, Path(tempfile.mkdtemp()), solver="cvc5", timeout=60, progress=False)
    assert reports and all(r.status == "proved" for r in reports), reports
    after = m.state_dict()
    assert all(after[k].tobytes() == before[k].tobytes() for k in before)
    assert m[0].weight.grad is not None and m[0].weight.grad.dtype == np.float32


def test_demo_without_out_writes_to_a_temporary_folder(tmp_path, monkeypatch, capsys):
    """No ``torchlean-demo/`` in the current folder: the artifacts go to a fresh temporary one."""
    import tempfile

    from torchlean.__main__ import main

    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    assert main(["demo", "--steps", "5"]) == 0
    assert list(cwd.iterdir()) == []
    (made,) = tmp.iterdir()
    assert made.name.startswith("torchlean-demo-") and (made / "summary.json").exists()
    assert f"artifacts in {made}/" in capsys.readouterr().out
