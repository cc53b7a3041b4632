"""Module and Parameter: the containers every layer is built from."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...spec.shapes import ShapeError
from ..backends import namespace, to_numpy
from ..tensor import Tensor

#: a partial shape: ``None`` for a dimension the layer does not constrain (e.g. the batch)
PartialShape = tuple[int | None, ...]


def size_arg(layer: str, name: str, value: Any) -> int:
    """A layer's size argument as an int >= 0: TypeError for 2.5 (int() would truncate it to a
    smaller layer), ValueError for a negative one (it surfaced as 'math domain error')."""
    import operator

    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{layer}: {name} must be a whole number, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{layer}: {name} must be >= 0, got {n}")
    return n


class Parameter(Tensor):
    """A tensor that a Module owns and an optimizer updates."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)


class Module:
    """Base class of layers and models (PyTorch-shaped).

    Subclasses assign Parameters, sub-Modules and buffers as attributes in ``__init__`` and
    define ``forward``. To take part in build-time shape checking they define
    ``output_shape(shape)`` (raise ShapeError when the input does not fit) and, when they fix
    their input's trailing dimensions, ``input_shape()``.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Tensor) -> None:
        """A tensor saved in the state_dict but not trained (e.g. running statistics)."""
        object.__setattr__(self, name, value)
        self._buffers[name] = value

    def _set_buffer(self, name: str, value: Tensor) -> None:
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    # -- calling -------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation: override it in a subclass; calling the module runs it."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- shapes --------------------------------------------------------------------------
    def input_shape(self) -> PartialShape | None:
        """The input shape this layer requires (None entries free), if it fixes one."""
        return None

    def output_shape(self, shape: PartialShape) -> PartialShape:
        """The output shape for an input of ``shape``; by default the same shape."""
        return shape

    # -- traversal -----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every sub-module, depth first."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, depth first."""
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        """The direct sub-modules."""
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for every parameter, each shared one once (torch's names)."""
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter, each shared one once (what an optimizer takes)."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) for every buffer (e.g. running statistics)."""
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self) -> int:
        """The number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())

    # -- modes ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch statistics) on every sub-module; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode on every sub-module (``train(False)``); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Clear every parameter's gradient."""
        for p in self.parameters():
            p.grad = None

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by dotted name, as numpy arrays (copies, exact bits)."""
        out: dict[str, np.ndarray] = {}
        for name, p in self.named_parameters():
            out[name] = to_numpy(p.data).copy()
        for name, b in self.named_buffers():
            out[name] = to_numpy(b.data).copy()
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into parameters and buffers, checking names and shapes."""
        targets: dict[str, tuple[Module, str, Tensor]] = {}
        for mname, m in self.named_modules():
            for table in (m._parameters, m._buffers):
                for name, t in table.items():
                    targets[f"{mname}.{name}" if mname else name] = (m, name, t)
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        for key, value in state.items():
            if key not in targets:
                continue
            _, _, t = targets[key]
            arr = to_numpy(value.data if isinstance(value, Tensor) else value)
            if tuple(arr.shape) != t.shape:
                raise ShapeError(f"load_state_dict: {key} has shape {tuple(arr.shape)}, expected {t.shape}")
            t.data = namespace(t.device).asarray(arr.astype(t.dtype, copy=True))

    def to(self, arg: Any = None, *, dtype: Any = None, device: str | None = None) -> Module:
        """Move/cast every parameter and buffer in place (keeps Parameter identity)."""
        for m in self.modules():
            for table in (m._parameters, m._buffers):
                for t in table.values():
                    moved = t.to(arg, dtype=dtype, device=device) if t.dtype.kind == "f" else t.to(
                        device=device if device else (arg if arg in ("cpu", "cuda") else None))
                    t.data = moved.data
        return self

    def extra_repr(self) -> str:
        """The constructor arguments shown in ``repr(module)``."""
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
