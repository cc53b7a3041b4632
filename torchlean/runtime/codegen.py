"""Straight-line Python for a plan: the executor behind ``runtime.compiled``.

A plan is a list of assignments over local variables. ``Program`` collects them with the names
each one reads and writes, then adds a ``del`` right after a variable's last read (liveness: CPython
frees the array as soon as its refcount drops, and numpy's allocator reuses the block for the next
temporary of that size) and compiles the result into a function. Local variables are the fastest
storage CPython has, so the hot loop does no dict lookups, builds no Tensor objects and walks no
tape.

Safety: the generated source only contains identifiers chosen here (``a12``, ``K3``, ``xp``),
operators and attribute names of the array namespace; every datum (attributes, shapes, constants,
kernel functions) is bound as a global of the function, never written into the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Line:
    code: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    #: (operand, code) pairs: the same computation written into ``operand``'s buffer
    inplace: tuple[tuple[str, str], ...] = ()


@dataclass
class Program:
    args: list[str]
    lines: list[Line] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    _n: int = 0

    def const(self, value: Any, prefix: str = "K") -> str:
        """Bind ``value`` as a global of the generated function and return its name."""
        name = f"{prefix}{self._n}"
        self._n += 1
        self.env[name] = value
        return name

    #: variables holding an array that a kernel just allocated and that no view shares
    fresh: set[str] = field(default_factory=set)

    def emit(self, code: str, reads: tuple[str, ...], writes: tuple[str, ...] = (), *,
             fresh: bool = False, inplace: tuple[tuple[str, str], ...] = ()) -> None:
        self.lines.append(Line(code, reads, writes, inplace))
        if fresh:
            self.fresh.update(writes)

    def _choose_inplace(self, result: list[str]) -> None:
        """Write into an operand's buffer when that operand is fresh and this line is its only
        reader: nothing can observe the overwrite (no view of it exists, nothing reads it later).
        Only exact IEEE operations (+ - * / max) get in-place forms, so the bits are those of the
        allocating form whatever loop numpy picks."""
        readers: dict[str, int] = {}
        for line in self.lines:
            for r in set(line.reads):
                readers[r] = readers.get(r, 0) + 1
        for r in result:
            readers[r] = readers.get(r, 0) + 1
        for line in self.lines:
            for operand, code in line.inplace:
                if operand in self.fresh and readers.get(operand) == 1 and line.reads.count(operand) == 1:
                    line.code = code
                    break

    def last_reads(self, result: list[str]) -> dict[str, int]:
        """Index of the line that reads each variable last (len(lines) for the results)."""
        last: dict[str, int] = {}
        for i, line in enumerate(self.lines):
            for r in line.reads:
                last[r] = i
        for r in result:
            last[r] = len(self.lines)
        return last

    def source(self, result: list[str], name: str = "plan") -> str:
        self._choose_inplace(result)
        last = self.last_reads(result)
        dead_after: dict[int, list[str]] = {}
        args = set(self.args)
        for var, i in last.items():
            if var not in args and var not in self.env and i < len(self.lines):
                dead_after.setdefault(i, []).append(var)
        body = []
        for i, line in enumerate(self.lines):
            body.append(f"    {line.code}")
            # variables written but never read again are dropped at once
            dead = sorted(set(dead_after.get(i, [])) | {
                w for w in line.writes if w not in last and w != "_"})
            if dead:
                body.append(f"    del {', '.join(dead)}")
        body.append(f"    return {', '.join(result)}" + ("," if len(result) == 1 else ""))
        return f"def {name}({', '.join(self.args)}):\n" + "\n".join(body) + "\n"

    def build(self, result: list[str], name: str = "plan") -> tuple[Callable[..., tuple[Any, ...]], str]:
        src = self.source(result, name)
        namespace = dict(self.env)
        exec(compile(src, f"<torchlean {name}>", "exec"), namespace)  # noqa: S102 - our own text
        return namespace[name], src
