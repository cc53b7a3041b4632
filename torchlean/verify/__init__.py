"""Untrusted search engines that produce certificates: IBP, CROWN (and a multi-slope α-CROWN),
complete branch-and-bound with input splitting, counterexample search. ``python -m torchlean.verify``.

What they claim is re-checked by ``torchlean.certificates`` (``check_vnn``) before it is reported.
"""

from .bab import Result, verify
from .bounds import METHODS, bounds, crown, ibp
from .network import FloatNet, InputError, as_net, float_net, load_graph, load_net, load_spec

__all__ = [
    "METHODS",
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
