"""Generate verification instances the verifier was not tuned on (issue 15), deterministic by seed.

    python bench/gen_instances.py --out DIR [--seed 0] [--count 36] [--kinds subbox,widen,tight]
        [--families acasxu,rl_benchmarks,reach_prob_density,mnistfc,tl_density,tl_policy]
        [--timeout 30] [--data ../shared/data]

Writes ``DIR/instances.csv`` in the VNN-COMP format (``onnx,vnnlib,timeout``, no header, paths
relative to DIR), ``DIR/meta.csv`` (the same rows with a header and what the generator knows:
kind, family, source instance, ``expected`` = ``sat`` only where a witness is known, the witness,
each file's sha256) and the files it makes: ``DIR/props/*.vnnlib``, ``DIR/nets/*.onnx``.

Kinds:
- ``subbox``: a random sub-box of a shared property's input box, with a random output constraint:
  "the decision at the box centre changes" (argmax, or argmin for ACAS Xu's advisories) on
  classifiers, or a threshold ``Y_i >= b`` / ``Y_i <= b`` placed near the top of the sampled range.
- ``widen``: a shared property, every input box widened about its centre by a factor (1.5, 2 or 3;
  ``--widen``). The widened box contains the original, so a published ``sat`` stays ``sat``.
- ``tight``: the maximum of ``±Y_i`` over a box, found by a long sampling + PGD run, and two
  instances with the threshold just below it (``tight-sat``: the run's point is a witness) and just
  above it (``tight-unsat``: unsat unless the search missed a higher point; the generator does not
  know, so its ``expected`` stays empty).
Families ``tl_density`` (a density-model-like 5 -> 64 -> 64 -> 64 -> 3 ReLU net) and ``tl_policy``
(a 4 -> 32 -> 32 -> 2 control policy) are trained here with torchlean on synthetic data (seconds),
exported with ``torchlean.bridge.export_onnx`` (constant Transposes folded into the weights so
tools that accept only MatMul/Add/Relu read it), and get ``subbox`` and ``tight`` properties over
their input domain.

A witness is claimed (``expected`` = sat) only when the point, rounded to float32, violates the
property both in onnxruntime (float32) and in torchlean's exact evaluation. Every property uses
only the atom forms ``(<= Y_i c)``, ``(>= Y_i c)``, ``(<= Y_i Y_j)``, which every VNN-COMP tool
(nnenum included) reads.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: shared benchmark folders (under --data) and the decision their outputs encode
SHARED = {
    "acasxu": ("vnncomp2021/acasxu", "argmin"),
    "rl_benchmarks": ("vnncomp2022/rl_benchmarks", "argmax"),
    "reach_prob_density": ("vnncomp2022/reach_prob_density", "regression"),
    "mnistfc": ("vnncomp2021/mnistfc", "argmax"),
}
TRAINED = {"tl_density": "regression", "tl_policy": "argmax"}
KINDS = ("subbox", "widen", "tight")
META = ["onnx", "vnnlib", "timeout", "kind", "family", "expected", "source", "note", "witness", "sha256"]


# ---------------------------------------------------------------- VNN-LIB text

def fmt(v: Fraction | float) -> str:
    """A number as VNN-LIB text: a Fraction whose denominator is 2^a 5^b exactly, else repr(float)."""
    if isinstance(v, Fraction):
        d, twos, fives = v.denominator, 0, 0
        while d % 2 == 0:
            d, twos = d // 2, twos + 1
        while d % 5 == 0:
            d, fives = d // 5, fives + 1
        if d == 1:  # a terminating decimal: k digits after the point, exactly
            k = max(twos, fives)
            n = v.numerator * 10 ** k // v.denominator
            s = str(abs(n)).rjust(k + 1, "0")
            s = (s[:-k] + "." + s[-k:]) if k else s + ".0"
            return ("-" if n < 0 else "") + s
        v = float(v)
    return repr(float(v))


Atom = tuple[str, str, str]  # (op, lhs, rhs): op in <=, >=; lhs "Y_i"; rhs "Y_j" or a number


def vnnlib_text(lo: list, hi: list, disjuncts: list[list[Atom]], n_out: int, comment: str) -> str:
    """A VNN-LIB property: the input box [lo, hi] and the unsafe output set, an OR of ANDs of atoms."""
    out = [f"; {line}" for line in comment.splitlines()]
    out += [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    out += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        out += [f"(assert (<= X_{i} {fmt(b)}))", f"(assert (>= X_{i} {fmt(a)}))"]
    atom = "({} {} {})".format
    if len(disjuncts) == 1:
        out += [f"(assert {atom(*t)})" for t in disjuncts[0]]
    else:
        out.append("(assert (or")
        out += ["    (and " + " ".join(atom(*t) for t in d) + ")" for d in disjuncts]
        out.append("))")
    return "\n".join(out) + "\n"


def atoms_of(region: Any) -> list[list[Atom]]:
    """A parsed region's unsafe disjuncts (a·y <= b) back in the simple atom forms; ValueError if one
    does not fit them (a general linear term, a strict atom)."""
    res = []
    for d in region.disjuncts:
        conj = []
        for t in d:
            nz = [(j, a) for j, a in enumerate(t.a) if a]
            if t.strict:
                raise ValueError("strict atom")
            if len(nz) == 1 and abs(nz[0][1]) == 1:
                j, a = nz[0]
                conj.append(("<=", f"Y_{j}", fmt(t.b)) if a == 1 else (">=", f"Y_{j}", fmt(-t.b)))
            elif len(nz) == 2 and t.b == 0 and sorted(a for _, a in nz) == [-1, 1]:
                p = next(j for j, a in nz if a == 1)
                m = next(j for j, a in nz if a == -1)
                conj.append(("<=", f"Y_{p}", f"Y_{m}"))
            else:
                raise ValueError("general linear atom")
        res.append(conj)
    return res


# ---------------------------------------------------------------- networks

def fold_transposes(model: Any) -> Any:
    """Replace every Transpose of an initializer by the transposed initializer (same function)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for n in model.graph.node:
        if n.op_type == "Transpose" and n.input[0] in inits:
            a = numpy_helper.to_array(inits[n.input[0]])
            perm = [p for at in n.attribute if at.name == "perm" for p in at.ints] or None
            t = np.ascontiguousarray(np.transpose(a, perm))
            model.graph.initializer.append(numpy_helper.from_array(t, n.output[0]))
        else:
            keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    live = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    return model


def train_net(family: str, seed: int, path: Path) -> tuple[list[float], list[float]]:
    """Train a small ReLU net with torchlean on synthetic data, export it to ``path``; returns the
    input domain (lo, hi) the properties are drawn in."""
    import onnx

    import torchlean as tl
    from torchlean import bridge, nn

    tl.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if family == "tl_density":
        # a density-model-like regression: (x, v, t) of a damped 2-D oscillator and the log-density
        # of a Gaussian blob transported by it (smooth, with a sharp-ish peak for hard thresholds)
        lo, hi = [-1.0] * 5, [1.0] * 5
        x = rng.uniform(lo, hi, (2048, 5))
        t = (x[:, 4:5] + 1) * 1.5
        pos = np.exp(-0.3 * t) * (x[:, 0:2] * np.cos(2 * t) + x[:, 2:4] * np.sin(2 * t))
        logd = -4.0 * np.sum((pos - 0.2) ** 2, 1, keepdims=True) - 0.3 * t
        y = np.concatenate([pos, logd], 1)
        model = nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
        trainer = tl.Trainer(model, task="regression", optimizer="adam", lr=0.005)
        trainer.train((x, y), steps=600, batch_size=64, progress=False)
    else:
        # a cart-pole-like policy: push right iff a linear feedback law (with a kink) says so
        lo, hi = [-2.0, -2.0, -0.3, -2.0], [2.0, 2.0, 0.3, 2.0]
        x = rng.uniform(lo, hi, (2048, 4))
        u = 0.3 * x[:, 0] + 0.6 * x[:, 1] + 8.0 * x[:, 2] + 1.2 * x[:, 3] + 0.5 * np.abs(x[:, 2]) * x[:, 3]
        y = (u > 0).astype(np.int64)
        model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
        trainer = tl.Trainer(model, task="classification", optimizer="adam", lr=0.01)
        trainer.train((x, y), steps=600, batch_size=64, progress=False)
    graph = tl.trace(model, tl.tensor(x[:1].astype(np.float32)))
    proto = fold_transposes(bridge.export_onnx(graph))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return lo, hi


class Model:
    """A ReLU chain read from ONNX: exact (torchlean's bound graph), float64 (sampling, PGD) and
    onnxruntime (float32, the file as other tools run it)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        from torchlean.verify.network import float_chain
        from torchlean.verify.table import load_target

        self.path = path
        self.net = load_target(path).bg
        self.fnet = float_chain(self.net)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.n_in, self.n_out = self.fnet.n_in, self.fnet.n_out

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fnet.forward(x)

    def ort(self, x: np.ndarray) -> np.ndarray:
        inp = self.sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        return np.asarray(self.sess.run(None, {inp.name: x.astype(np.float32).reshape(shape)})[0],
                          dtype=np.float64).ravel()

    def maximise(self, c: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator,
                 samples: int, starts: int, steps: int) -> tuple[float, np.ndarray, float]:
        """max of c·f(x) over the box by sampling then sign-PGD with restarts (from the best samples,
        random and corner points); returns (best value, its point, the sampled minimum)."""
        x = rng.uniform(lo, hi, (samples, lo.size))
        s = self.forward(x) @ c
        corners = np.where(rng.random((starts // 4, lo.size)) < 0.5, lo, hi)
        z = np.concatenate([x[np.argsort(-s)[: starts // 2]], rng.uniform(lo, hi, (starts // 4, lo.size)),
                            corners])
        step = (hi - lo) / 4
        for _ in range(steps):
            _, g = self.fnet.value_and_grad(z, lambda y: np.broadcast_to(-c, y.shape))  # of -c·f: descend
            z = np.clip(z - step * np.sign(g), lo, hi)
            step = step * (0.02 ** (1 / steps))
        allx = np.concatenate([x, z])
        alls = np.concatenate([s, self.forward(z) @ c])
        k = int(np.argmax(alls))
        return float(alls[k]), allx[k], float(s.min())


def witness(model: Model, text: str, x: np.ndarray) -> list[float] | None:
    """x rounded to float32 if it lies in the property's box and violates the property both in
    onnxruntime and in torchlean's exact evaluation (a sat the generator can claim), else None."""
    from torchlean.certificates.property import parse_property
    from torchlean.verify.attack import to_float32_in_box
    from torchlean.verify.table import atom_holds, confirm

    spec = parse_property(text)
    for r in spec.regions:
        xq = to_float32_in_box(x, r)  # (float32, moved inward by float32 steps where rounding left the box)
        if xq is None or not confirm(model.net, spec, xq):
            continue
        y = [Fraction(float(v)) for v in model.ort(np.array([float(v) for v in xq]))]  # float32 outputs
        if any(all(atom_holds(t, y) for t in d) for d in r.disjuncts):
            return [float(v) for v in xq]
    return None


# ---------------------------------------------------------------- instances

def decision_atoms(style: str, c: int, n_out: int) -> list[list[Atom]]:
    """Unsafe: output c is not the strict winner (some other output >= it, or <= for argmin)."""
    op = ">=" if style == "argmax" else "<="
    return [[(op, f"Y_{k}", f"Y_{c}")] for k in range(n_out) if k != c]


class Gen:
    def __init__(self, a: argparse.Namespace) -> None:
        from torchlean.certificates.property import parse_property

        self.a, self.out = a, Path(a.out)
        self.rng = np.random.default_rng(a.seed)
        self.rows: list[dict[str, Any]] = []
        self.models: dict[str, Model] = {}
        self.sources: dict[str, list[dict[str, Any]]] = {}
        for fam in a.families:
            if fam in SHARED:
                folder = Path(a.data) / SHARED[fam][0]
                with open(folder / "expected.csv") as f:
                    rows = list(csv.DictReader(f))
                self.sources[fam] = [{"net": folder / r["onnx"], "prop": folder / r["vnnlib"],
                                      "expected": r["expected"], "name": f"{r['onnx']}:{r['vnnlib']}",
                                      "spec": None} for r in rows]
            else:
                path = self.out / "nets" / f"{fam}_s{a.seed}.onnx"
                lo, hi = train_net(fam, a.seed, path)
                self.sources[fam] = [{"net": path, "prop": None, "expected": "", "name": path.name,
                                      "spec": (lo, hi)}]
        self.parse = parse_property

    def model(self, path: Path) -> Model:
        if str(path) not in self.models:
            self.models[str(path)] = Model(path)
        return self.models[str(path)]

    def base(self, fam: str) -> tuple[dict[str, Any], Model, Any]:
        """A random source instance of the family, its model and its first region (lo, hi, region)."""
        src = self.sources[fam][int(self.rng.integers(len(self.sources[fam])))]
        m = self.model(src["net"])
        if src["prop"] is None:
            return src, m, (np.array(src["spec"][0]), np.array(src["spec"][1]), None)
        spec = self.parse(Path(src["prop"]).read_text())
        r = spec.regions[int(self.rng.integers(len(spec.regions)))]
        return src, m, (np.array([float(v) for v in r.lo]), np.array([float(v) for v in r.hi]), r)

    def emit(self, kind: str, fam: str, src: dict[str, Any], m: Model, lo: Any, hi: Any,
             disjuncts: list[list[Atom]], note: str, probe: np.ndarray | None = None,
             expected: str = "") -> None:
        """Write one property; claim sat if a probe point (or the published verdict) gives one."""
        i = len(self.rows)
        name = f"props/{i:03d}_{kind}_{fam}.vnnlib"
        comment = (f"generated by bench/gen_instances.py --seed {self.a.seed}: {kind} on {fam}\n"
                   f"source: {src['name']}\n{note}")
        text = vnnlib_text(list(lo), list(hi), disjuncts, m.n_out, comment)
        p = self.out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        wit = None
        if probe is not None:
            wit = witness(m, text, probe)
        if wit is not None:
            expected = "sat"
        net_rel = os.path.relpath(m.path, self.out)
        digest = hashlib.sha256(p.read_bytes() + Path(m.path).read_bytes()).hexdigest()[:16]
        self.rows.append({"onnx": net_rel, "vnnlib": name, "timeout": fmt(float(self.a.timeout)),
                          "kind": kind, "family": fam, "expected": expected, "source": src["name"],
                          "note": note, "witness": " ".join(repr(v) for v in wit) if wit else "",
                          "sha256": digest})

    def output_constraint(self, style: str, m: Model, lo: np.ndarray, hi: np.ndarray
                          ) -> tuple[list[list[Atom]], str, np.ndarray]:
        """A random output constraint for the box, and the most violating point the short search saw."""
        if style != "regression" and self.rng.random() < 0.5:
            c = int(np.argmax(m.forward(((lo + hi) / 2)[None])[0] * (1 if style == "argmax" else -1)))
            x = self.rng.uniform(lo, hi, (256, lo.size))
            y = m.forward(x) * (1 if style == "argmax" else -1)
            wrong = np.flatnonzero(np.argmax(y, 1) != c)
            probe = x[wrong[0]] if wrong.size else (lo + hi) / 2
            return decision_atoms(style, c, m.n_out), f"{style} at centre = {c}", probe
        j = int(self.rng.integers(m.n_out))
        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        cvec = np.zeros(m.n_out)
        cvec[j] = sign
        best, xb, low = m.maximise(cvec, lo, hi, self.rng, 256, 16, 20)
        r = float(self.rng.uniform(-0.05, 0.2))  # (mostly above the sampled top: a mix of sat/unsat)
        b = best + r * max(best - low, 1e-6)  # unsafe: sign*Y_j >= b
        atom = (">=", f"Y_{j}", repr(b)) if sign > 0 else ("<=", f"Y_{j}", repr(-b))
        return [[atom]], f"threshold {'max' if sign > 0 else 'min'} Y_{j}, offset {r:+.3f} of range", xb

    def subbox(self, fam: str) -> None:
        src, m, (lo, hi, _) = self.base(fam)
        width = hi - lo
        f = self.rng.uniform(0.05, 0.5, lo.size) if lo.size < 100 else self.rng.uniform(0.3, 0.9, lo.size)
        start = lo + self.rng.uniform(0, 1, lo.size) * width * (1 - f)
        slo, shi = start, np.minimum(start + f * width, hi)
        style = SHARED[fam][1] if fam in SHARED else TRAINED[fam]
        dis, note, probe = self.output_constraint(style, m, slo, shi)
        self.emit("subbox", fam, src, m, slo, shi, dis, note, probe)

    def widen(self, fam: str) -> None:
        src, m, _ = self.base(fam)
        w = Fraction(str(self.rng.choice(self.a.widen)))
        spec = self.parse(Path(src["prop"]).read_text())
        if len(spec.regions) != 1:  # (the shared families have one box per property)
            raise ValueError(f"{src['name']}: {len(spec.regions)} regions")
        r = spec.regions[0]
        c = [(a + b) / 2 for a, b in zip(r.lo, r.hi)]
        lo = [ci - w * (ci - a) for ci, a in zip(c, r.lo)]
        hi = [ci + w * (b - ci) for ci, b in zip(c, r.hi)]
        dis = atoms_of(r)
        flo, fhi = np.array([float(v) for v in lo]), np.array([float(v) for v in hi])
        exp = "sat" if src["expected"] == "sat" else ""  # the widened box holds the original's witness
        probe = self._violator(m, r, flo, fhi)
        self.emit("widen", fam, src, m, lo, hi, dis, f"box widened x{w} about its centre", probe, exp)

    def _violator(self, m: Model, r: Any, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
        """A sampled point in the box that violates the region's property (float), if one is seen."""
        from torchlean.verify.attack import margins

        x = self.rng.uniform(lo, hi, (512, lo.size))
        mg = margins(r, m.forward(x)).min(1)
        k = int(np.argmin(mg))
        return x[k] if mg[k] <= 0 else None

    def tight(self, fam: str) -> None:
        src, m, (lo, hi, _) = self.base(fam)
        if self.rng.random() < 0.5:  # half on a sub-box, half on the whole box
            f = self.rng.uniform(0.2, 0.6, lo.size)
            start = lo + self.rng.uniform(0, 1, lo.size) * (hi - lo) * (1 - f)
            lo, hi = start, start + f * (hi - lo)
        j = int(self.rng.integers(m.n_out))
        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        cvec = np.zeros(m.n_out)
        cvec[j] = sign
        best, xb, low = m.maximise(cvec, lo, hi, self.rng, self.a.tight_samples, 64, self.a.tight_steps)
        delta = self.a.tight_rel * max(best - low, 1e-6)
        for side, b in (("sat", best - delta), ("unsat", best + delta)):
            atom = (">=", f"Y_{j}", repr(b)) if sign > 0 else ("<=", f"Y_{j}", repr(-b))
            note = (f"{'max' if sign > 0 else 'min'} Y_{j} found {sign * best!r}; threshold "
                    f"{'inside' if side == 'sat' else 'outside'} by {self.a.tight_rel} of the range")
            self.emit(f"tight-{side}", fam, src, m, lo, hi, [[atom]], note, xb if side == "sat" else None)

    def run(self) -> None:
        plan = []
        for i in range(self.a.count):
            kind = self.a.kinds[i % len(self.a.kinds)]
            fams = [f for f in self.a.families if kind != "widen" or f in SHARED]
            if fams:
                plan.append((kind, fams[int(self.rng.integers(len(fams)))]))
        for kind, fam in plan:
            getattr(self, kind)(fam)
        self.write()

    def write(self) -> None:
        from torchlean._files import atomic_write_text

        buf = io.StringIO()
        rows = [[r["onnx"], r["vnnlib"], r["timeout"]] for r in self.rows]
        csv.writer(buf, lineterminator="\n").writerows(rows)
        atomic_write_text(str(self.out / "instances.csv"), buf.getvalue())
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=META, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(str(self.out / "meta.csv"), buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for instances.csv, meta.csv, props/, nets/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=36, help="draws (a tight draw makes two instances)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--families", default=",".join([*SHARED, *TRAINED]))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--timeout", type=float, default=30.0, help="the timeout column, seconds")
    ap.add_argument("--widen", default="1.5,2,3", help="widening factors to draw from")
    ap.add_argument("--tight-rel", type=float, default=0.002, help="threshold offset, fraction of the range")
    ap.add_argument("--tight-samples", type=int, default=4096)
    ap.add_argument("--tight-steps", type=int, default=200)
    a = ap.parse_args(argv)
    a.kinds = [k for k in a.kinds.split(",") if k]
    a.families = [f for f in a.families.split(",") if f]
    a.widen = [float(w) for w in a.widen.split(",") if w]
    bad = [k for k in a.kinds if k not in KINDS]
    bad += [f for f in a.families if f not in SHARED and f not in TRAINED]
    if bad or not a.kinds or not a.families:
        print(f"error: unknown kind or family {', '.join(bad) or '(none given)'}", file=sys.stderr)
        return 2
    missing = [f for f in a.families
               if f in SHARED and not (Path(a.data) / SHARED[f][0] / "expected.csv").is_file()]
    if missing:
        print(f"error: no {', '.join(missing)} under --data {a.data}", file=sys.stderr)
        return 2
    Path(a.out).mkdir(parents=True, exist_ok=True)
    g = Gen(a)
    g.run()
    kinds: dict[str, int] = {}
    for r in g.rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    counts = ", ".join(f"{k} {n}" for k, n in kinds.items())
    print(f"{len(g.rows)} instances in {a.out}/instances.csv ({counts}; "
          f"{sum(r['expected'] == 'sat' for r in g.rows)} with a known witness)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
