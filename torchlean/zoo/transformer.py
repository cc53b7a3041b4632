"""A character-level GPT (``python -m torchlean transformer``) that learns two-digit addition.

Text: every line "AA+BB=CCC" for AA, BB in 00..99 (zero-padded, so positions align), generated
here (no data file: the corpus is its own definition); 90% of the 10,000 sums train, the other
1,000 are held out. Model: token and learned position embeddings (width 64), two causal
``TransformerEncoderLayer`` (4 heads, feed-forward 128, pre-norm), a final LayerNorm and a linear
head over the 13 characters, trained on next-character prediction. Quality: exact-match accuracy
of greedy completions "AA+BB=" -> "CCC" on the held-out sums (sums it never saw), and sampled lines.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..runtime.nn import Embedding, LayerNorm, Linear, Module, ModuleList, TransformerEncoderLayer

__all__ = ["CHARS", "CharGPT", "corpus", "decode", "encode", "greedy", "train"]

CHARS = "0123456789+=\n"
LINE = 10  # "AA+BB=CCC\n"
PROMPT = 6  # "AA+BB="


def encode(text: str) -> np.ndarray:
    """Character indices of ``text``."""
    return np.array([CHARS.index(c) for c in text], dtype=np.int64)


def decode(idx: Any) -> str:
    """The text of character indices."""
    return "".join(CHARS[int(i)] for i in np.ravel(idx))


def corpus(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) arrays of encoded lines (N, LINE): all 10,000 sums, 10% held out by ``seed``."""
    lines = np.stack([encode(f"{a:02d}+{b:02d}={a + b:03d}\n") for a in range(100) for b in range(100)])
    order = np.random.default_rng(seed).permutation(len(lines))
    return lines[order[1000:]], lines[order[:1000]]


class CharGPT(Module):
    """The decoder-only transformer of the module docstring."""

    def __init__(self, width: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok, self.pos = Embedding(len(CHARS), width), Embedding(LINE, width)
        self.blocks = ModuleList([TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0,
                                                          batch_first=True, norm_first=True)
                                  for _ in range(layers)])
        self.norm, self.head = LayerNorm(width), Linear(width, len(CHARS))

    def forward(self, idx: Any) -> Any:
        """Next-character logits (N, L, 13) for indices (N, L)."""
        import torchlean as tl

        n, length = idx.shape
        x = self.tok(idx) + self.pos(tl.tensor(np.arange(length)[None].repeat(n, 0)))
        for block in self.blocks:
            x = block(x, is_causal=True)
        return self.head(self.norm(x))


def train(steps: int = 1500, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          progress: bool | None = None) -> tuple[CharGPT, list[dict[str, float]], float]:
    """(trained model, history of {step, loss, time}, seconds)."""
    import torchlean as tl
    from torchlean.nn import functional as F

    from ..progress import bar

    tl.manual_seed(seed)
    net = CharGPT()
    opt = tl.optim.Adam(net.parameters(), lr=lr)
    lines, _ = corpus(seed)
    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    with bar(total=steps, desc="transformer", unit="step", enabled=progress) as p:
        for step in range(1, steps + 1):
            batch = lines[rng.integers(0, len(lines), batch_size)]
            logits = net(tl.tensor(batch[:, :-1]))
            target = tl.tensor(batch[:, 1:].reshape(-1))
            loss = F.cross_entropy(F.reshape(logits, (-1, len(CHARS))), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            p.update(1)
            if step % 50 == 0 or step == steps:
                history.append({"step": step, "loss": float(loss), "time": time.perf_counter() - t0})
                p.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
    net.eval()
    return net, history, time.perf_counter() - t0


def greedy(net: Any, prompts: np.ndarray, length: int = LINE - PROMPT) -> np.ndarray:
    """Greedy continuations (N, length) of encoded prompts (N, P)."""
    import torchlean as tl

    seq = np.array(prompts)
    for _ in range(length):
        logits = net(tl.tensor(seq)).numpy()[:, -1]
        seq = np.concatenate([seq, logits.argmax(-1)[:, None]], axis=1)
    return seq[:, prompts.shape[1]:]


def sample(net: Any, prompt: str, rng: np.random.Generator, temperature: float = 1.0) -> str:
    """One line sampled after ``prompt`` (softmax with ``temperature``), up to the newline."""
    import torchlean as tl

    seq = encode(prompt)[None]
    while seq.shape[1] < LINE:
        logits = net(tl.tensor(seq)).numpy()[0, -1] / temperature
        p = np.exp(logits - logits.max())
        nxt = rng.choice(len(CHARS), p=p / p.sum())
        seq = np.concatenate([seq, [[nxt]]], axis=1)
        if CHARS[nxt] == "\n":
            break
    return decode(seq[0]).rstrip("\n")


def run(args: Any) -> int:
    """``python -m torchlean transformer`` (flags in ``torchlean.__main__``)."""
    net, history, seconds = train(args.steps, seed=args.seed, progress=args.progress)
    _, test = corpus(args.seed)
    got = greedy(net, test[:, :PROMPT])
    exact = float(np.mean((got[:, :3] == test[:, PROMPT:PROMPT + 3]).all(1)))
    print(f"char GPT (2 layers, width 64, {net.num_parameters()} parameters) on 9,000 sums "
          f"'AA+BB=CCC': {args.steps} steps in {seconds:.1f} s, final loss {history[-1]['loss']:.3f}; "
          f"exact-match accuracy on the 1,000 held-out sums: {exact:.1%}")
    rng = np.random.default_rng(args.seed)
    for prompt in ("12+", "57+", "9"):
        print(f"  sample: {sample(net, prompt, rng, args.temperature)}")
    if args.log:
        from ..runtime.trainer import write_log

        write_log(args.log, history)
        print(f"training log: {args.log}")
    return 0
