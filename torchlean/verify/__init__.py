"""Untrusted search engines that produce certificates: IBP, CROWN (and a multi-slope α-CROWN),
complete branch-and-bound with input splitting, counterexample search. ``python -m torchlean.verify``.

What they claim is re-checked by ``torchlean.certificates`` (``check_vnn``) before it is reported.

The model-level API (``api``; docs/verify-api.md): ``bounds(model_or_graph, x, eps)`` (sound output
bounds computed by the checker's engine) and ``robustness(model, x, eps, label)`` (a checked
verdict). ``box_bounds(net, (lo, hi), method)`` is the search's float bound on a ReLU chain.
"""

from . import api
from .api import BoundsResult, RobustnessResult, robustness
from .bab import Result, verify
from .bounds import METHODS, crown, ibp
from .bounds import bounds as box_bounds
from .network import FloatNet, InputError, as_net, float_net, load_graph, load_net, load_spec

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
    "as_net",
    "bounds",
    "crown",
    "float_net",
    "ibp",
    "load_graph",
    "load_net",
    "load_spec",
    "verify",
]
