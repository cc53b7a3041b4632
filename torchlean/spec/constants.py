"""Numeric constants shared by the spec and the runtime.

Where a standard definition involves an irrational constant (GELU's sqrt(2/pi)), torchlean *defines*
the operation with the binary64 value of that constant, so that the runtime and the spec name the
same real function and proofs compare like with like. The spec reads these floats as exact
rationals.
"""

GELU_C = 0.7978845608028654  # sqrt(2/pi) rounded to binary64
GELU_A = 0.044715
