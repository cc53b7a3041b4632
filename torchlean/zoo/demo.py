"""``python -m torchlean demo``: the main job, end to end.

1. Train a small Auto MPG regression MLP (7→8→1, tanh) with the Trainer.
2. Autograd: mark the model ``@verified``, discharge its obligation (the tape's whole backward
   pass equals the derivative of its spec forward, for *all* weights) with an SMT solver, store
   the artifact, and replay it through the trusted checker.
3. Rounding: a certified bound ε on |float32 output − real output| over the box spanned by the
   held-out data, as an ``errorbound`` certificate replayed in exact arithmetic; next to it the
   largest error observed on 10,000 sampled points.

Nothing is reported as checked unless ``torchlean.certificates`` accepted it. Exit status 0 only
when every claim was checked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import _outward
from .._files import atomic_write_text

MODEL_NAME = "auto_mpg_tanh"


def run(out: Path, steps: int = 300, solver: str = "cvc5", seed: int = 0) -> int:
    import torchlean as tl
    from torchlean import nn
    from torchlean.certificates import check
    from torchlean.floats.errorbound import bound_certificate, epsilons, observed_error
    from torchlean.proofs.artifacts import check_one, write_atomic
    from torchlean.proofs.discharge import discharge
    from torchlean.proofs.obligation import SOURCES
    from torchlean.proofs.verified import verified
    from torchlean.zoo import auto_mpg

    out.mkdir(parents=True, exist_ok=True)
    failures = 0

    # 1. train -----------------------------------------------------------------------------------
    tl.manual_seed(seed)
    data = auto_mpg.load()
    model = nn.Sequential(nn.Linear(7, 8), nn.Tanh(), nn.Linear(8, 1))
    trainer = tl.Trainer(model, task="regression", optimizer="adam", lr=0.02, seed=seed)
    before = trainer.eval(data.test())["loss"]
    trained = trainer.train(data.train(), steps=steps, batch_size=32, progress=False)
    after = trained.eval(data.test())["loss"]
    print(f"[1/3] trained MLP 7→8→1 (tanh) on Auto MPG: test MSE {before:.4f} → {after:.4f} "
          f"after {steps} steps")

    # 2. autograd obligation -----------------------------------------------------------------------
    verified(model, name=MODEL_NAME, input_shape=(1, 7), proof="monolithic")  # one obligation
    obligations = list(SOURCES[f"verified.model.{MODEL_NAME}"]())
    proofs = out / "proofs"
    t0 = time.perf_counter()
    reports = discharge(obligations, proofs, solver=solver, timeout=120, progress=False)
    t_discharge = time.perf_counter() - t0
    for ob, rep in zip(obligations, reports, strict=True):
        t0 = time.perf_counter()
        outcome = check_one(proofs, ob)
        print(f"[2/3] autograd: {ob.statement}\n      discharge ({solver}): {rep.status} in "
              f"{t_discharge:.2f}s; trusted checker: {outcome.status} ({outcome.detail}) in "
              f"{time.perf_counter() - t0:.2f}s; artifact {proofs / (ob.name + '.json')}")
        failures += outcome.status != "checked"

    # 3. certified rounding error ----------------------------------------------------------------
    graph = tl.trace(model, tl.tensor(np.zeros((1, 7), dtype=np.float32)))
    x = data.x_test.astype(np.float32)
    box = [(float(lo), float(hi)) for lo, hi in zip(x.min(0), x.max(0))]
    cert = bound_certificate(graph, box, "binary32")
    write_atomic(out / "errorbound.json", cert)
    verdict = check(cert)
    eps = _outward.float_out(epsilons(cert)[0], "up")  # (>= the checked ε, and so is its JSON text)
    observed = float(observed_error(graph, box, 10_000).max_error[0])
    status = "checked" if verdict.ok else f"REJECTED ({verdict.reason})"
    print(f"[3/3] rounding: |float32 − real| ≤ ε = {_outward.up(eps, 4, 'e')} on the held-out data box; "
          f"trusted checker: {status}; observed max over 10,000 points {observed:.3e} "
          f"(ε/observed = {eps / observed:.1f})" if observed > 0 else
          f"[3/3] rounding: ε = {_outward.up(eps, 4, 'e')}; trusted checker: {status}; observed error 0")
    failures += not verdict.ok

    summary = {"test_mse_before": before, "test_mse_after": after, "autograd": [r.status for r in reports],
               "epsilon": eps, "observed": observed, "failures": failures}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(f"{'all claims checked' if not failures else f'{failures} claim(s) NOT checked'}; "
          f"artifacts in {out}/")
    return 0 if not failures else 1
