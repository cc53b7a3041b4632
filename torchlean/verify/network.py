"""Loading networks and properties for the verifier: ONNX → graph IR (→ the bound table's graph,
``verify.table``), and the float64 copy of a ReLU chain the attack and the branching scores run on.

``float_chain`` reads a chain's layers off the bound graph the checker itself lowers
(``certificates.lower``): the same exact weights, rounded to float64 once here. It is untrusted:
nothing it computes is a bound; the checker recomputes every claim from the graph.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import _cli
from .._files import MAX_VNNLIB_BYTES, InputFileError, read_input, read_input_bytes
from ..certificates.property import Spec, parse_property


class InputError(ValueError):
    """Bad user input (file missing, unsupported model or property); one line."""


class FloatNet:
    """Affine layers (W, b) in float64 with a ReLU between consecutive ones. ``layers`` may be
    given as a function that makes them, called on first use: a chain searched by ReLU splitting
    (mnistfc, collins) never reads them, and its dense copies are hundreds of MB on a conv net."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]] | Callable[[], Any]):
        self._layers = None if callable(layers) else layers
        self._make = layers if callable(layers) else None

    @property
    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._layers is None:
            self._layers = self._make()
        return self._layers

    @property
    def n_in(self) -> int:
        return self.layers[0][0].shape[1]

    @property
    def n_out(self) -> int:
        return self.layers[-1][0].shape[0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch of points (B, n_in), float64."""
        h = x
        for i, (W, b) in enumerate(self.layers):
            h = h @ W.T + b
            if i + 1 < len(self.layers):
                h = np.maximum(h, 0.0)
        return h

    def value_and_grad(self, x: np.ndarray, g_y: Callable[[np.ndarray], np.ndarray], leak: float = 0.0
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (B, n_out) and the input gradient (B, n_in) of sum_j G[b, j]·y[b, j] with
        G = g_y(y): the executor protocol ``attack`` runs on (``executor.GraphExec`` for graphs).
        ``leak`` > 0: the backward pass lets that share of the cotangent through inactive ReLUs
        (the outputs stay exact; ``attack.leaky``)."""
        acts, h = [], np.asarray(x, dtype=np.float64)
        for i, (W, c) in enumerate(self.layers):
            h = h @ W.T + c
            if i + 1 < len(self.layers):
                acts.append(np.where(h > 0, 1.0, leak) if leak else h > 0)
                h = np.maximum(h, 0.0)
        g = g_y(h)
        for i in range(len(self.layers) - 1, -1, -1):
            g = g @ self.layers[i][0]
            if i > 0:
                g = g * acts[i - 1]
        return h, g


def float_chain(bg: Any) -> FloatNet | None:
    """The float64 layers of a bound graph that is a ReLU chain (every node after the input a relu
    node whose forms read only the node before it, the outputs reading the last one), or None.
    The weights are the fast engine's float conversion of the exact forms (``fast_engine.compiled``,
    each coefficient rounded to nearest, the same numbers ``float(q)`` gives), read as matrices:
    the search needs that conversion anyway and a per-coefficient pass costs seconds on mnistfc."""
    from ..certificates import fast_engine as fe

    if not all(n.kind == "fn" and n.fn == "relu" for n in bg.nodes[1:]):
        return None
    fg = fe.compiled(bg)
    parts = [*fg.forms[1:], fg.out]
    if any(p != k for k, forms in enumerate(parts) for p, *_ in forms.parents):
        return None  # some form reads an earlier node: not a chain

    def layers() -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for k, forms in enumerate(parts):  # (node k + 1's forms, or the outputs, read node k)
            W = forms.parents[0][1].take() if forms.parents else np.zeros((forms.R, bg.nodes[k].size))
            out.append((np.array(W, dtype=np.float64), np.array(forms.c, dtype=np.float64)))
        return out

    return FloatNet(layers)


#: the largest network file read (bytes): protobuf's own limit on a serialized model
MAX_ONNX_BYTES = 2**31 - 1


def network_bytes(path: str | Path) -> tuple[bytes, str]:
    """The network file's bytes, read once, and their sha256 (hex): what the import, the cache of
    imports (``table.load_target``) and onnxruntime's session (``_session``) are all made from, so
    that none of them can be of other bytes than the others (audit43). One-line ``InputError``s."""
    p = Path(path)
    if not p.is_file():  # (a FIFO or a directory is refused, never opened)
        kind = "a directory" if p.is_dir() else "not a regular file" if p.exists() else "no such file"
        raise InputError(f"{path}: {kind}")
    try:
        data = read_input_bytes(p, MAX_ONNX_BYTES, what="network")
    except InputFileError as e:
        raise InputError(str(e)) from None
    return data, hashlib.sha256(data).hexdigest()


def load_graph(path: str | Path, data: bytes | None = None) -> Any:
    """An ONNX file as a spec graph; errors are one-line ``InputError``s naming the file. ``data``:
    the file's bytes as ``network_bytes`` read them (the graph is then of those very bytes).

    A model whose tensors keep their data in external files is refused (audit43): the verdict, the
    results table's digest of the network (``runner``) and the cache of imports would be about the
    .onnx file alone, while its weights live in another file that can change under them."""
    from ..bridge.onnx import _onnx, load_onnx

    if data is None:
        data, _ = network_bytes(path)
    if not data:  # (onnx reads 0 bytes as an empty model: "imports no default-domain opset")
        raise InputError(f"{path}: an empty file (0 bytes), not an ONNX model")
    try:
        onnx = _onnx()
        from onnx.external_data_helper import _get_all_tensors, uses_external_data

        # (the serialization onnx.load(path) picks by the file's extension; protobuf by default)
        fmt = onnx.serialization.registry.get_format_from_file_extension(os.path.splitext(str(path))[1])
        try:
            model = onnx.load_model_from_string(data, format=fmt or "protobuf")
        except Exception as e:  # onnx raises DecodeError and friends (``load_onnx``'s wording)
            raise InputError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
        outside = [t.name for t in _get_all_tensors(model) if uses_external_data(t)]
        if outside:
            raise InputError(f"{path}: tensor {outside[0]!r} keeps its data in an external file, which "
                             "is not read (save the model with its weights inside: onnx.save_model(m, "
                             "path, save_as_external_data=False))")
        return load_onnx(model)
    except InputError:
        raise
    except Exception as e:  # the importer's errors are one line; keep them so
        raise InputError(_cli.about(path, e)) from None


#: how far the import's float64 run may be from onnxruntime's before the network is refused, per
#: output element: RUNTIME_TOL · (1 + the largest output) plus RUNTIME_SLACK times that element's
#: float32 run's distance from its float64 one (rounding, which cancellation can make large). On
#: the 39 shared VNN-COMP networks onnxruntime is within 1.1e-4 of the float64 run (relative:
#: within 1e-5); a misread operator (a lost bias, padding, scale) is off by far more
RUNTIME_TOL = 1e-3
RUNTIME_SLACK = 100.0


_SESSIONS: dict[Any, Any] = {}  # (file, sha256 of its bytes) -> its onnxruntime session, or None


def _session(path: str | Path, sha256: str | None = None) -> Any:
    """onnxruntime's session of the file (made once per file and contents: ``verify run`` checks
    each instance of a network, and a sat's check then costs the run only), or None; made from the
    bytes read here, which must hash to ``sha256`` (the import's: ``Target.sha256``) when given,
    else ``FileChanged`` (audit43: a session of other bytes is no reference for the import)."""
    import onnxruntime as ort

    try:
        data, digest = network_bytes(path)
    except InputError:
        return None
    if sha256 is not None and digest != sha256:
        raise FileChanged(f"{path} changed since it was imported (its bytes hash otherwise)")
    key = (os.path.realpath(path), digest)
    if key not in _SESSIONS:
        try:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3  # (errors only: IR-3 files warn about initializers as inputs)
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception:  # (an ONNX file this runtime cannot run: no reference to compare with)
            sess = None
        if len(_SESSIONS) >= 8:
            _SESSIONS.clear()
        _SESSIONS[key] = sess
    return _SESSIONS[key]


class FileChanged(Exception):
    """The network file's bytes are not the ones imported (``_session``)."""


def runtime_mismatch(path: str | Path, graph: Any, points: list[list[Any]], sha256: str | None = None
                     ) -> str | None:
    """Where the imported graph and onnxruntime disagree on the file at ``points``, or None (they
    agree, or nothing could be compared: ``runtime_compare`` says which)."""
    return runtime_compare(path, graph, points, sha256)[0]


def runtime_compare(path: str | Path, graph: Any, points: list[list[Any]], sha256: str | None = None
                    ) -> tuple[str | None, str | None]:
    """(where the imported graph and onnxruntime disagree on the file at ``points``, why nothing
    was compared): at most one of the two is not None. ``points`` are flat inputs, the graph inputs
    concatenated, each rounded to the input's dtype first. Nothing is compared when onnxruntime is
    not installed, cannot load or run the file, or no point has finite outputs on both sides: the
    second element then says which, in a few words, for the caller to report (audit30: a missing
    onnxruntime used to leave a verdict that looked cross-checked). Untrusted: a cross-check of the
    trusted importer that can only refuse (a wrong operator reading would otherwise turn into a
    wrong verdict, with a checker-accepted certificate, on a new network). ``sha256``: the
    imported bytes' digest (``Target.sha256``): a file that no longer hashes so is a disagreement."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed"
    from ..runtime.execute import run_graph

    try:
        sess = _session(path, sha256)  # (of the imported bytes, or none: a refusal)
    except FileChanged as e:
        return str(e), None
    if sess is None:
        return None, "onnxruntime cannot load the file"
    names = [i.name for i in sess.get_inputs()]
    dtypes = {"tensor(double)": np.float64, "tensor(float16)": np.float16}
    kinds = {i.name: dtypes.get(i.type, np.float32) for i in sess.get_inputs()}
    if sorted(names) != sorted(v.name for v in graph.inputs):
        return "its graph inputs differ from onnxruntime's", None
    compared = 0
    for x in points:
        feeds, at = {}, 0
        flat = np.array([float(v) for v in x], dtype=np.float64)
        for v in graph.inputs:
            n = int(np.prod(v.shape))
            feeds[v.name] = flat[at : at + n].reshape(v.shape).astype(kinds[v.name])
            at += n
        try:
            ref = sess.run(None, feeds)
        except Exception:
            return None, "onnxruntime could not run the file"
        with np.errstate(all="ignore"):
            runs = [run_graph(graph, feeds, dtype=t) for t in (np.float64, np.float32)]
        a, a32 = (np.concatenate([np.ravel(o).astype(np.float64) for o in run]) for run in runs)
        b = np.concatenate([np.ravel(r).astype(np.float64) for r in ref])
        if a.shape != b.shape:
            return f"{a.size} outputs here, {b.size} in onnxruntime", None
        if not all(np.all(np.isfinite(v)) for v in (a, a32, b)):
            continue  # (no real-number reference to compare with)
        compared += 1
        # each output element gets the slack of its own rounding: a maximum over all of them let
        # one cancelling output (x + 1e8) - 1e8 (float32 error ~1, slack ~100) hide a misread of
        # every other one (audit30; on the 39 shared networks both rules leave gaps below 6.1e-4
        # of what is allowed)
        allowed = RUNTIME_TOL * (1 + float(np.max(np.abs(b), initial=0.0))) + RUNTIME_SLACK * np.abs(a - a32)
        over = np.abs(a - b) > allowed
        if np.any(over):
            gap = float(np.max(np.abs(a - b)[over]))
            at = ", ".join(f"{float(v):.6g}" for v in flat[:4]) + (", ..." if flat.size > 4 else "")
            return f"its outputs differ by {gap:.3g} from onnxruntime's at ({at})", None
    if points and not compared:
        return None, "no point had finite outputs on both sides"
    return None, None


def load_spec(path: str | Path, cross_check: bool = True) -> Spec:
    """The property as the checker reads it (``certificates.property``), cross-checked against the
    bridge's independent lark parser: the statement a verdict is about must not hinge on one
    parser (a shared-state bug in one of them once turned an unsat property into a "sat" one)."""
    p = Path(path)
    try:
        text = read_input(p, MAX_VNNLIB_BYTES, what="VNN-LIB file")
    except ValueError as e:
        raise InputError(str(e)) from None
    try:
        spec = parse_property(text)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    if cross_check:
        other = _bridge_spec(p, text)
        if other is not None and other != _canon(spec):
            raise InputError(f"{path}: the two VNN-LIB readers disagree on this property; refusing it")
    return spec


def _dnf(disjuncts: Any) -> list[Any]:
    """A disjunction of conjunctions of atoms, order and repeats forgotten (they mean nothing)."""
    return sorted({tuple(sorted(set(conj))) for conj in disjuncts})


def _canon(spec: Spec) -> Any:
    """The checker's reading as the cross-check compares it: per region the box, the strictness
    of each bound, and the output condition with every atom's strictness."""
    return (
        spec.n_in,
        spec.n_out,
        sorted(
            (r.lo, r.hi, *r.strictness(), _dnf([(t.a, t.b, t.strict) for t in d] for d in r.disjuncts))
            for r in spec.regions
        ),
    )


def _bridge_spec(p: Path, text: str | None = None) -> Any:
    try:
        from ..bridge.vnnlib import parse_vnnlib, parse_vnnlib_string
    except ImportError:
        return None
    try:
        prop = parse_vnnlib(p) if text is None else parse_vnnlib_string(text, str(p))
    except ValueError as e:
        raise InputError(str(e).splitlines()[0]) from None
    out = []
    for r in prop.regions:
        n = len(r.lower_exact)
        strict = (r.lower_strict or (False,) * n, r.upper_strict or (False,) * n)
        conds = _dnf([(c.coeffs, c.rhs, c.strict) for c in d] for d in r.disjuncts)
        out.append((r.lower_exact, r.upper_exact, *strict, conds))
    return (prop.n_inputs, prop.n_outputs, sorted(out))
