"""``verify_float32``'s timeout bounds the whole call, the checker's replay included (dl35).

Before dl35 the replay of a float-sound certificate got a whole ``timeout`` of its own after the
search: in process (no CLI watchdog) ACAS Xu 1_1 prop 6 took 76-108 s under a 60 s timeout
(bench/README.md "dl35"). Instances: the ACAS Xu files copied under tests/data (VNN-COMP 2021,
published verdicts in its expected.csv)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from torchlean.verify import float32
from torchlean.verify.__main__ import main
from torchlean.verify.table import load_instance

ACAS = Path(__file__).parent / "data" / "vnncomp2021" / "acasxu"
NET = ACAS / "ACASXU_run2a_1_1_batch_2000.onnx"


def published(prop: str) -> str:
    """VNN-COMP 2021's verdict for 1_1 ``prop`` (expected.csv)."""
    with open(ACAS / "expected.csv") as f:
        return next(r["expected"] for r in csv.DictReader(f)
                    if r["onnx"] == NET.name and r["vnnlib"] == prop)


def test_replay_gets_what_the_search_left(monkeypatch):
    """The checker's replay is given the call's own deadline (t0 + timeout), not a fresh timeout
    from where the search ended: an unsat is reported only once it is accepted by that deadline."""
    seen: list[float] = []
    real_check = float32.check_vnn_float

    def recording(*a, deadline, **k):
        seen.append(deadline)
        return real_check(*a, deadline=deadline, **k)

    monkeypatch.setattr(float32, "check_vnn_float", recording)
    t, spec = load_instance(str(NET), str(ACAS / "prop_3.vnnlib"))
    timeout = 15.0
    start = time.monotonic()
    res = float32.verify_float32(t.graph, t, spec, timeout, splits=float32.SPLITS)
    wall = time.monotonic() - start
    assert published("prop_3.vnnlib") == "unsat"
    assert res.verdict in ("unsat", "timeout"), res.stats.get("why")
    if res.verdict == "unsat":  # (a few tenths of a second when the machine is not overloaded)
        assert res.stats["epsilon_checked"] and res.stats["why"].startswith("unsat (binary32-sound)")
    assert len(seen) == (res.verdict == "unsat" or "deadline" in res.stats["why"])
    # the search took >= 0.2 s before the replay (the walk and float_bab): a replay deadline counted
    # from its own start (the old one) lies that much past start + timeout
    assert all(d <= start + timeout + 0.1 for d in seen), [d - start for d in seen]
    assert wall < 2 * timeout + 10


def test_float32_cli_in_process_ends_near_its_timeout(capsys):
    """1_1 prop 6 (a float-sound proof of ~1,800 walks: 30-40 s of search and as much replay at
    load 2) under a 10 s timeout, through ``main(argv)`` in process (no watchdog): the run ends
    within a generous grace of its timeout and answers unsat (checked) or timeout, never sat
    (published verdict: unsat)."""
    assert published("prop_6.vnnlib") == "unsat"
    timeout = 10
    start = time.monotonic()
    assert main([str(NET), str(ACAS / "prop_6.vnnlib"), "--float32", "-q", "--timeout", str(timeout)]) == 0
    wall = time.monotonic() - start
    out = capsys.readouterr().out.strip().splitlines()
    assert out and out[0] in ("timeout", "unsat (float32-sound, checked)"), out
    assert wall < 2 * timeout + 10, wall
