"""audit36: ``verify run``'s results table and ``verify check`` as a CI job uses them.

Found: ``run --out RES.csv`` resumed a row keyed by the list's path strings (onnx, vnnlib,
timeout) alone. The same names listed from another folder (``two/list.csv`` after
``one/list.csv``, one results file) or a network file replaced between runs kept the old row: the
table said ``unsat ... accepted`` for the VNN-COMP 2021 ``test_sat`` network, whose published
verdict is sat. Now each row records the sha256 of the two files' bytes (equal before and after the
run, else the row is an error) and a digest of torchlean's sources; a rerun reruns a row whose
files or code differ, and a sat/unsat row whose ``check`` is not "accepted" (a row the runner never
writes). A verdict without a certificate is ``unknown`` in the table (the single command's rule).

Held (tests below): ``check`` with the certificate of a network of the same shape (fingerprint),
a float, ``1e999`` (read as inf by json), a 10^100000 integer or fraction, an exponent past the
limit, a duplicated key (json keeps the last; the checker checks the value it reads, nothing hashes
the text), a 3000-deep split tree of 4000-digit rationals in exact mode (stopped at the deadline),
and ``run``'s ``check`` column carrying the "not compared with onnxruntime" note.

Added: ``check --expect unsat|sat``. ``check`` exits 0 for any accepted certificate, a sat one (a
counterexample) included, so a CI step gating on "the property holds" passed for a certificate file
swapped for the other verdict's; ``--expect`` makes that exit 1.

References: the published VNN-COMP 2021 verdicts of ``test_sat``/``test_unsat`` on
``test_prop`` (tests/data/vnncomp2021/test/expected.csv, see its SOURCE.md), hashlib's sha256 of
the files, and a fresh run of each instance.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchlean.verify import runner

DATA = Path(__file__).parent / "data" / "vnncomp2021" / "test"
ROOT = Path(__file__).resolve().parents[1]


def published() -> dict[str, str]:
    """The published verdicts (network file -> verdict) on test_prop.vnnlib."""
    with open(DATA / "expected.csv") as f:
        return {r["onnx"]: r["expected"] for r in csv.DictReader(f) if r["vnnlib"] == "test_prop.vnnlib"}


def folder(tmp: Path, name: str, net: str) -> Path:
    """A list folder holding ``net`` as net.onnx, test_prop as prop.vnnlib, and list.csv."""
    d = tmp / name
    d.mkdir()
    shutil.copy(DATA / net, d / "net.onnx")
    shutil.copy(DATA / "test_prop.vnnlib", d / "prop.vnnlib")
    (d / "list.csv").write_text("onnx,vnnlib\nnet.onnx,prop.vnnlib\n")
    return d


def results(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def run(lst: Path, out: Path) -> dict[str, str]:
    rows = runner.run_csv(lst, out=str(out), timeout=60, progress=False)
    (row,) = results(out)
    assert rows[0]["result"] == row["result"]
    return row


def test_published_references() -> None:
    assert published() == {"test_sat.onnx": "sat", "test_unsat.onnx": "unsat"}


def test_same_names_in_another_folder_are_run_again(tmp_path: Path) -> None:
    one, two = folder(tmp_path, "one", "test_unsat.onnx"), folder(tmp_path, "two", "test_sat.onnx")
    out = tmp_path / "res.csv"
    assert run(one / "list.csv", out)["result"] == published()["test_unsat.onnx"]
    row = run(two / "list.csv", out)
    assert row["result"] == published()["test_sat.onnx"]  # (was: one's unsat, "accepted")
    assert row["onnx_sha256"] == hashlib.sha256((two / "net.onnx").read_bytes()).hexdigest()


def test_replaced_network_is_run_again(tmp_path: Path) -> None:
    one = folder(tmp_path, "one", "test_unsat.onnx")
    out = tmp_path / "res.csv"
    assert run(one / "list.csv", out)["result"] == "unsat"
    shutil.copy(DATA / "test_sat.onnx", one / "net.onnx")
    assert run(one / "list.csv", out)["result"] == published()["test_sat.onnx"]


def test_replaced_property_is_run_again(tmp_path: Path) -> None:
    """The property file replaced by one with an empty input box (X_0 >= 1 and <= 0 added: no
    input point), whose fresh run is a vacuous unsat, after the published sat."""
    one = folder(tmp_path, "one", "test_sat.onnx")
    out = tmp_path / "res.csv"
    assert run(one / "list.csv", out)["result"] == "sat"
    p = one / "prop.vnnlib"
    p.write_text(p.read_text() + "\n(assert (>= X_0 1.0))\n(assert (<= X_0 0.0))\n")
    row = run(one / "list.csv", out)
    assert row["result"] == "unsat"
    assert row["vnnlib_sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_unchanged_row_is_reused_and_bound_to_the_files(tmp_path: Path) -> None:
    one = folder(tmp_path, "one", "test_sat.onnx")
    out = tmp_path / "res.csv"
    first = run(one / "list.csv", out)
    assert first["result"] == "sat" and first["check"].startswith("accepted")
    assert first["onnx_sha256"] == hashlib.sha256((DATA / "test_sat.onnx").read_bytes()).hexdigest()
    assert first["vnnlib_sha256"] == hashlib.sha256((DATA / "test_prop.vnnlib").read_bytes()).hexdigest()
    assert first["torchlean"] == runner.source_digest()
    assert run(one / "list.csv", out) == first  # (reused as written: the same solve time)


def test_listed_twice_and_absolute_spelling(tmp_path: Path) -> None:
    """One network under two spellings (relative, absolute) and listed twice: each row is its own
    file's published verdict, and a resumed run keeps them."""
    one = folder(tmp_path, "one", "test_sat.onnx")
    shutil.copy(DATA / "test_unsat.onnx", one / "u.onnx")
    (one / "list.csv").write_text(
        f"onnx,vnnlib\nnet.onnx,prop.vnnlib\n{one / 'u.onnx'},prop.vnnlib\nnet.onnx,prop.vnnlib\n"
        f"u.onnx,prop.vnnlib\n")
    out = tmp_path / "res.csv"
    for _ in range(2):
        runner.run_csv(one / "list.csv", out=str(out), timeout=60, progress=False)
        assert [r["result"] for r in results(out)] == ["sat", "unsat", "sat", "unsat"]


@pytest.mark.parametrize("name", ["prop.vnnlib", "net.onnx"])
def test_out_naming_a_listed_file_is_refused(tmp_path: Path, name: str) -> None:
    """``--out one/prop.vnnlib --force`` wrote the results table over the property (the next list
    entries then read a CSV); now refused in one line, the file's bytes unchanged."""
    one = folder(tmp_path, "one", "test_unsat.onnx")
    before = hashlib.sha256((one / name).read_bytes()).hexdigest()
    p = cli("run", str(one / "list.csv"), "--out", str(one / name), "--force", "-q")
    assert p.returncode == 2 and "is an input of this command" in p.stderr, p.stderr
    assert hashlib.sha256((one / name).read_bytes()).hexdigest() == before


def edit(out: Path, **cells: str) -> None:
    rows = results(out)
    head = list(rows[0])
    rows[0].update(cells)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=head)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("cells", [
    {"result": "unsat", "check": ""},  # a verdict typed in by hand
    {"result": "unsat", "check": "REJECTED: recomputed bound -0.01 < claimed 0"},
    {"result": "unsat", "check": "accepted", "torchlean": "0" * 16},  # made by other code
    {"result": "unsat", "check": "accepted", "onnx_sha256": ""},  # a results file of old format
])
def test_edited_or_foreign_rows_are_run_again(tmp_path: Path, cells: dict[str, str]) -> None:
    one = folder(tmp_path, "one", "test_sat.onnx")
    out = tmp_path / "res.csv"
    assert run(one / "list.csv", out)["result"] == "sat"
    edit(out, **cells)
    assert run(one / "list.csv", out)["result"] == published()["test_sat.onnx"]


def test_file_changed_during_the_run_is_an_error(tmp_path: Path, monkeypatch) -> None:
    one = folder(tmp_path, "one", "test_unsat.onnx")
    real = runner.run_instance

    def swapping(net, prop, *a, **k):
        r = real(net, prop, *a, **k)
        shutil.copy(DATA / "test_sat.onnx", net)  # (replaced while the verdict was made)
        return r

    monkeypatch.setattr(runner, "run_instance", swapping)
    rows = runner.run_csv(one / "list.csv", out=str(tmp_path / "res.csv"), timeout=60, progress=False)
    assert rows[0]["result"] == runner.ERROR and "changed during the run" in rows[0]["check"]


def test_verdict_without_certificate_is_unknown(tmp_path: Path, monkeypatch) -> None:
    from torchlean.verify import bab
    from torchlean.verify.tree import Result

    one = folder(tmp_path, "one", "test_unsat.onnx")
    monkeypatch.setattr(bab, "solve", lambda *a, **k: Result("unsat", stats={"time": 0.0}))
    r = runner.run_one(one / "net.onnx", one / "prop.vnnlib", 60.0)
    assert r["result"] == "unknown"


def test_run_table_carries_the_onnxruntime_note(tmp_path: Path, monkeypatch) -> None:
    from torchlean.verify import table

    one = folder(tmp_path, "one", "test_unsat.onnx")
    monkeypatch.setattr(table, "RUNTIME_CHECK_S", 1e9)  # (no time left for the cross-check)
    r = runner.run_one(one / "net.onnx", one / "prop.vnnlib", 60.0)
    assert r["result"] == "unsat" and r["check"].startswith("accepted")
    assert table.RUNTIME_UNCHECKED in r["check"]


# -- check ------------------------------------------------------------------------------------

def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchlean.verify", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("cert")
    c = d / "u.json"
    p = cli(str(DATA / "test_unsat.onnx"), str(DATA / "test_prop.vnnlib"), "--cert", str(c), "-q")
    assert p.stdout.split()[0] == "unsat", p.stderr
    return d, json.loads(c.read_text())


def check(path: Path, net: str = "test_unsat.onnx", *extra: str) -> subprocess.CompletedProcess:
    return cli("check", str(path), str(DATA / net), str(DATA / "test_prop.vnnlib"), *extra)


def test_check_accepts_own_and_refuses_same_shape_network(cert) -> None:
    d, c = cert
    assert check(d / "u.json").stdout.startswith("accepted")
    p = check(d / "u.json", "test_sat.onnx")  # (the same 5-in 5-out shape; published sat)
    assert p.returncode == 1 and "different network" in p.stdout


@pytest.mark.parametrize("net", ["test_sat.onnx", "test_unsat.onnx"])
def test_check_expect_gates_on_the_published_verdict(tmp_path: Path, net: str) -> None:
    """A CI gate ``check --expect unsat``: a swapped-in, valid certificate of the other verdict (a
    counterexample) used to exit 0 like a proof; now exit 1 unless it proves the expected one."""
    c = tmp_path / "c.json"
    p = cli(str(DATA / net), str(DATA / "test_prop.vnnlib"), "--cert", str(c), "-q")
    verdict = published()[net]
    assert p.stdout.split()[0] == verdict
    assert check(c, net).returncode == 0  # (without --expect: either verdict accepted)
    for expect in ("sat", "unsat"):
        p = check(c, net, "--expect", expect)
        assert p.returncode == (0 if expect == verdict else 1), p.stdout
        assert p.stdout.startswith("accepted" if expect == verdict else "rejected")


def claim(c: dict) -> list:
    """The leaf's claim list [[atom], value] of the certificate's one leaf."""
    (region,) = c["regions"]
    leaf = region[-1]
    assert leaf[0] == "leaf"
    return leaf[1][0]


@pytest.mark.parametrize("text", ["1e999", "1e308", "0.00497", "1" + "0" * 100000,
                                  '"1/1' + "0" * 100000 + '"', '"1e99999"', "1" + "0" * 3999])
def test_check_refuses_huge_or_float_numbers_in_one_line(cert, text: str) -> None:
    d, c = cert
    value = json.dumps(claim(c)[1])
    body = json.dumps(c, separators=(",", ":"))
    assert body.count(value) == 1
    f = d / "huge.json"
    f.write_text(body.replace(value, text))
    t = time.monotonic()
    p = check(f, "test_unsat.onnx", "--timeout", "5")
    assert time.monotonic() - t < 60
    assert p.returncode in (1, 2) and "accepted" not in p.stdout
    assert len((p.stdout + p.stderr).strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_check_duplicate_key_is_judged_on_the_value_read(cert) -> None:
    """json keeps a key's last value; the checker checks what it reads (a 'regions' or 'method'
    appended after the real one is what is replayed, and refused)."""
    d, c = cert
    body = json.dumps(c, separators=(",", ":"))
    for extra in (',"regions":[]', ',"method":"ibp"', ',"network":"' + "0" * 64 + '"'):
        f = d / "dup.json"
        f.write_text(body[:-1] + extra + "}")
        p = check(f)
        assert p.returncode == 1 and p.stdout.startswith("rejected"), (extra, p.stdout)
    f.write_text('{"network":"' + "0" * 64 + '",' + body[1:])  # (the real one last: accepted)
    assert check(f).stdout.startswith("accepted")


def test_check_deep_tree_of_long_rationals_stops_at_deadline(cert) -> None:
    from fractions import Fraction as F

    d, c = cert
    lo, hi = F("-0.30353115613746867"), F("-0.29855281193475053")  # (test_prop's X_0 box)
    assert f"{lo}" and "(>= X_0 -0.30353115613746867)" in (DATA / "test_prop.vnnlib").read_text()
    leaf = c["regions"][0][-1]
    tree: list = []
    for k in range(3000):  # each split in the upper part of the one before, 4000-digit rationals
        v = lo + (hi - lo) * (1 - F(1, 2 + k)) + F(1, 10**3990)
        tree += [["split", 0, f"{v.numerator}/{v.denominator}"], leaf]
    f = d / "deep.json"
    f.write_text(json.dumps({**c, "regions": [tree + [leaf]]}))
    t = time.monotonic()
    p = check(f, "test_unsat.onnx", "--mode", "exact", "--timeout", "3")
    assert time.monotonic() - t < 40
    assert p.returncode == 1 and "deadline" in p.stdout
