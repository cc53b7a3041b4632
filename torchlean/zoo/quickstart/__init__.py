"""Quickstart examples, runnable as ``python -m torchlean quickstart tensors|autograd|mlp``.

Each module is a short standalone script with a ``main()``; ``examples/quickstart_*.py`` are
byte-identical copies (a test keeps them so).
"""

from __future__ import annotations

from importlib import import_module

EXAMPLES = ("tensors", "autograd", "mlp")


def run(name: str) -> None:
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; expected one of {', '.join(EXAMPLES)}")
    import_module(f"{__name__}.{name}").main()
