"""The index backend's array namespace ``XP`` (what the runtime's rules call as ``xp``): the index
semantics of each numpy function they use, on ``IArr`` arrays (``index_backend``); trusted as
statement reading and tested against numpy (``tests/test_proofs_adjoint.py``)."""

from __future__ import annotations

from typing import Any

from .index_backend import (
    Aff,
    Grid,
    IArr,
    ILeaf,
    Mono,
    _is1,
    lift,
    mul,
    require_shape,
    scale,
    scatter_add,
    sum_over,
    take,
)


class XP:
    """The index backend's array namespace (what the rules call as ``xp``)."""

    @staticmethod
    def matmul(a: IArr, b: IArr) -> IArr:
        """Over the last two axes; batch axes broadcast (numpy's rule, aligned from the right)."""
        a, b = lift(a), lift(b)
        require_shape(a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == b.shape[-2],
                      f"matmul {a.shape} @ {b.shape}")
        nb = max(a.ndim, b.ndim) - 2
        ba, bb = (1,) * (nb - a.ndim + 2) + a.shape[:-2], (1,) * (nb - b.ndim + 2) + b.shape[:-2]
        batch = []
        for d, e in zip(ba, bb):
            require_shape(_is1(d) or _is1(e) or d == e, f"matmul batch {a.shape} @ {b.shape}")
            batch.append(e if _is1(d) else d)
        aat, bat = a.at, b.at

        def pick(x: IArr, i: tuple[Any, ...]) -> tuple[Any, ...]:
            r = x.ndim - 2
            return tuple(0 if _is1(d) else v for d, v in zip(x.shape[:-2], i[nb - r:nb]))

        def at(i: tuple[Any, ...]) -> list[Mono]:
            pa, pb = pick(a, i), pick(b, i)
            return sum_over((a.shape[-1],), lambda k: mul(aat((*pa, i[-2], k[0])), bat((*pb, k[0], i[-1]))))
        return IArr((*batch, a.shape[-2], b.shape[-1]), at)

    @staticmethod
    def transpose(x: IArr, axes: Any = None) -> IArr:
        perm = tuple(range(x.ndim))[::-1] if axes is None else tuple(int(a) % x.ndim for a in axes)
        require_shape(sorted(perm) == list(range(x.ndim)), f"transpose axes {axes}")
        xat = x.at

        def at(i: tuple[Any, ...]) -> list[Mono]:
            src: list[Any] = [0] * x.ndim
            for k, p in enumerate(perm):
                src[p] = i[k]
            return xat(tuple(src))
        return IArr(tuple(x.shape[p] for p in perm), at,
                    parts={k: x.parts[p] for k, p in enumerate(perm) if p in x.parts})

    @staticmethod
    def swapaxes(x: IArr, a: int, b: int) -> IArr:
        perm = list(range(x.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return XP.transpose(x, perm)

    @staticmethod
    def sum(x: IArr, axis: Any = None, keepdims: bool = False) -> IArr:
        axes = tuple(range(x.ndim)) if axis is None else (
            (axis,) if isinstance(axis, int) else tuple(axis))
        axes = tuple(sorted(a % x.ndim for a in axes))
        kept = [k for k in range(x.ndim) if k not in axes]
        shape = tuple(1 if k in axes else d for k, d in enumerate(x.shape)) if keepdims else \
            tuple(x.shape[k] for k in kept)
        xat = x.at

        def at(i: tuple[Any, ...]) -> list[Mono]:
            outer = [i[k] for k in kept] if keepdims else list(i)

            def term(r: tuple[Any, ...]) -> list[Mono]:
                full, it, jt = [], iter(r), iter(outer)
                for k in range(x.ndim):
                    full.append(next(it) if k in axes else next(jt))
                return xat(tuple(full))
            return sum_over(tuple(x.shape[k] for k in axes), term,
                            {n: x.parts[k] for n, k in enumerate(axes) if k in x.parts})
        return IArr(shape, at)

    @staticmethod
    def broadcast_to(x: IArr, shape: tuple[Any, ...]) -> IArr:
        shape = tuple(shape)
        lead = len(shape) - x.ndim
        require_shape(lead >= 0 and all(_is1(d) or d == e for d, e in zip(x.shape, shape[lead:])),
                      f"broadcast {x.shape} -> {shape}")
        xat = x.at

        def at(i: tuple[Any, ...]) -> list[Mono]:
            return xat(tuple(0 if _is1(d) else i[lead + k] for k, d in enumerate(x.shape)))
        return IArr(shape, at)

    @staticmethod
    def zeros(shape: Any, dtype: Any = None) -> IArr:
        return IArr(tuple(shape) if isinstance(shape, (tuple, list)) else (shape,), lambda i: [])

    @staticmethod
    def zeros_like(x: IArr, dtype: Any = None) -> IArr:
        return XP.zeros(x.shape)

    @staticmethod
    def stack(xs: list[IArr], axis: int = 0) -> IArr:
        require_shape(len(xs) > 0 and all(x.shape == xs[0].shape for x in xs), "stack")
        ax = axis % (xs[0].ndim + 1)
        ats = [x.at for x in xs]

        def at(i: tuple[Any, ...]) -> list[Mono]:
            require_shape(type(i[ax]) is int, "stack read at a symbolic position")
            return ats[i[ax]](i[:ax] + i[ax + 1:])
        return IArr((*xs[0].shape[:ax], len(xs), *xs[0].shape[ax:]), at)

    @staticmethod
    def concatenate(xs: Any, axis: int = 0) -> IArr:
        xs = list(xs)
        ax = axis % xs[0].ndim
        require_shape(all(x.ndim == xs[0].ndim and all(d == e for k, (d, e) in enumerate(
            zip(x.shape, xs[0].shape)) if k != ax) for x in xs), "concatenate")
        offsets: list[Any] = [0]
        for x in xs:
            offsets.append(offsets[-1] + x.shape[ax])
        ats = [x.at for x in xs]

        def at(i: tuple[Any, ...]) -> list[Mono]:
            out: list[Mono] = []
            for f, off, n in zip(ats, offsets, [x.shape[ax] for x in xs]):
                j = i[ax] - off  # piece k under off_k <= i <= off_k + n_k - 1
                guards = tuple(Aff.of(g) for g in (j, n - 1 - j) if type(g) is not int)
                if all(g >= 0 for g in (j, n - 1 - j) if type(g) is int):
                    out += scale(f((*i[:ax], j, *i[ax + 1:])), 1, (), guards)
            return out
        return IArr((*xs[0].shape[:ax], offsets[-1], *xs[0].shape[ax + 1:]), at)

    @staticmethod
    def tensordot(a: IArr, b: IArr, axes: Any = 2) -> IArr:
        a, b = lift(a), lift(b)
        ax_a, ax_b = ((tuple(range(a.ndim - axes, a.ndim)), tuple(range(axes))) if isinstance(axes, int)
                      else (tuple(axes[0]), tuple(axes[1])))
        ax_a, ax_b = tuple(k % a.ndim for k in ax_a), tuple(k % b.ndim for k in ax_b)
        require_shape(all(a.shape[p] == b.shape[q] for p, q in zip(ax_a, ax_b)), "tensordot sizes")
        fa = [k for k in range(a.ndim) if k not in ax_a]
        fb = [k for k in range(b.ndim) if k not in ax_b]
        aat, bat = a.at, b.at

        def at(i: tuple[Any, ...]) -> list[Mono]:
            def term(r: tuple[Any, ...]) -> list[Mono]:
                ia: list[Any] = [0] * a.ndim
                ib: list[Any] = [0] * b.ndim
                for k, v in zip(fa, i[:len(fa)]):
                    ia[k] = v
                for k, v in zip(fb, i[len(fa):]):
                    ib[k] = v
                for p, q, v in zip(ax_a, ax_b, r):
                    ia[p] = ib[q] = v
                return mul(aat(tuple(ia)), bat(tuple(ib)))
            return sum_over(tuple(a.shape[k] for k in ax_a), term)
        return IArr(tuple(a.shape[k] for k in fa) + tuple(b.shape[k] for k in fb), at)

    @staticmethod
    def ones_like(x: IArr, dtype: Any = None) -> IArr:
        return XP.broadcast_to(lift(1), x.shape)

    @staticmethod
    def flip(x: IArr, axis: Any = None) -> IArr:
        axes = range(x.ndim) if axis is None else [axis] if isinstance(axis, int) else axis
        return x[tuple(slice(None, None, -1) if k in [a % x.ndim for a in axes] else slice(None)
                       for k in range(x.ndim))]

    @staticmethod
    def expand_dims(x: IArr, axis: int) -> IArr:
        ax = axis % (x.ndim + 1)
        return x.reshape(x.shape[:ax] + (1,) + x.shape[ax:])

    @staticmethod
    def pad(x: IArr, pad_width: Any, mode: str = "constant", constant_values: Any = 0) -> IArr:
        """Zero padding only (the linear case)."""
        widths = [tuple(w) for w in pad_width] if isinstance(pad_width[0], (tuple, list)) else \
            [tuple(pad_width)] * x.ndim
        require_shape(mode == "constant" and constant_values == 0, f"pad mode {mode}")
        out = XP.zeros(tuple(d + a + b for d, (a, b) in zip(x.shape, widths)))
        out[tuple(slice(a, a + d) for d, (a, _) in zip(x.shape, widths))] = x
        return out

    class add:  # noqa: N801  (numpy's ufunc method ``add.at``)
        @staticmethod
        def at(a: IArr, key: Any, v: Any) -> None:
            """Unbuffered a[key] += v: a basic key (each position hit once), or index arrays."""
            k = key if isinstance(key, tuple) else (key,)
            if any(isinstance(e, (ILeaf, Grid)) for e in k):
                scatter_add(a, k, v)
            else:
                a.write(key, v, False)

    @staticmethod
    def take_along_axis(x: IArr, idx: ILeaf, axis: int) -> IArr:
        return take(x, idx, axis)

    @staticmethod
    def indices(shape: Any, sparse: bool = False) -> list[Grid]:
        require_shape(sparse, "a dense index grid")
        return [Grid(k, tuple(shape)) for k in range(len(shape))]
