"""Numeric constants shared by the spec and the runtime.

Where a standard definition involves an irrational constant (GELU's sqrt(2/pi)), torchlean *defines*
the operation with the binary64 value of that constant, so that the runtime and the spec name the
same real function and proofs compare like with like. The spec reads these floats as exact
rationals.
"""

GELU_C = 0.7978845608028654  # sqrt(2/pi) rounded to binary64
GELU_A = 0.044715
#: 1/sqrt(2) rounded to binary64 (C's M_SQRT1_2): torch's exact GELU kernel computes
#: x/2 * (1 + erf(x * M_SQRT1_2)) with this constant (cast to the tensor's dtype), and so does
#: torchlean's ``gelu(approximate='none')``, a composition of primitives around ``erf``
SQRT1_2 = 0.7071067811865476
#: 2/sqrt(pi) rounded to binary64 (C's M_2_SQRTPI): erf's derivative factor in the runtime's VJP on
#: numpy/cupy; the symbolic backend uses the exact 2/sqrt(pi) instead (``runtime/symbolic.py``)
M_2_SQRTPI = 1.1283791670955126
