"""Untrusted search engines that produce certificates: IBP, CROWN (and a multi-slope α-CROWN),
complete branch-and-bound with input splitting, counterexample search. ``python -m torchlean.verify``.

What they claim is re-checked by ``torchlean.certificates`` (``check_vnn``) before it is reported.

The model-level API (``api``; docs/verify-api.md): ``bounds(model_or_graph, x, eps)`` (sound output
bounds computed by the checker's engine) and ``robustness(model, x, eps, label)`` (a checked
verdict). ``box_bounds(graph, (lo, hi), method)``: the same engine's bounds over a batch of boxes.
"""

from . import api
from .api import BoundsResult, RobustnessResult, robustness
from .bab import solve, verify
from .bounds import METHODS, crown, ibp
from .bounds import bounds as box_bounds
from .network import FloatNet, InputError, float_chain, load_graph, load_spec
from .tree import Result

# the package attribute ``bounds`` is the model-level API (importing the submodule ``verify.bounds``
# would otherwise rebind it to that module)
bounds = api.bounds

__all__ = [
    "METHODS",
    "BoundsResult",
    "RobustnessResult",
    "box_bounds",
    "robustness",
    "FloatNet",
    "InputError",
    "Result",
    "bounds",
    "crown",
    "float_chain",
    "ibp",
    "load_graph",
    "load_spec",
    "solve",
    "verify",
]
