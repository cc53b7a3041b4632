"""A character-level GPT (``python -m torchlean transformer``): on a public-domain text (default), or
learning two-digit addition (``--corpus sums``).

- ``text``: the books of Genesis and Exodus of the King James Bible (public domain; bundled,
  ``zoo/data/KJV-SOURCE.md``), 366,194 characters over 62 symbols; the first 90% train, the last
  10% (the end of Exodus) is held out. Batches are random windows of ``BLOCK`` characters; quality:
  the held-out cross-entropy in bits per character (over consecutive windows), next to the
  unigram entropy of the training text, and a sampled continuation.
- ``sums``: every line "AA+BB=CCC" for AA, BB in 00..99 (zero-padded, so positions align), generated
  here; 90% of the 10,000 sums train, the other 1,000 are held out; quality: exact-match accuracy
  of greedy completions "AA+BB=" -> "CCC" on the held-out sums (sums it never saw).

Model: token and learned position embeddings (width 64), two causal ``TransformerEncoderLayer``
(4 heads, feed-forward 128, pre-norm), a final LayerNorm and a linear head over the characters,
trained with Adam on next-character prediction through ``zoo._fit`` (a ``Trainer``: ``--backend``,
``--dtype``, ``--device``).
"""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Any

import numpy as np

from ..runtime.nn import Embedding, LayerNorm, Linear, Module, ModuleList, TransformerEncoderLayer
from . import _fit

__all__ = ["CHARS", "AfterLookup", "CharGPT", "batches", "bits_per_char", "corpus", "decode", "encode",
           "greedy", "load_text", "lookup_box", "sample", "train"]

CHARS = "0123456789+=\n"  # the sums' alphabet
LINE = 10  # "AA+BB=CCC\n"
PROMPT = 6  # "AA+BB="
BLOCK = 64  # the text model's context
TEXT = "kjv-genesis-exodus.txt.gz"
TEST_FRACTION = 0.1
PROMPT_TEXT = "And the LORD said unto Moses, "
EPS_CONTEXT = 4  # --certify's float32 epsilon: at contexts of this many characters


def encode(text: str, chars: str = CHARS) -> np.ndarray:
    """Character indices of ``text`` in the alphabet ``chars``."""
    index = {c: i for i, c in enumerate(chars)}
    return np.array([index[c] for c in text], dtype=np.int64)


def decode(idx: Any, chars: str = CHARS) -> str:
    """The text of character indices."""
    return "".join(chars[int(i)] for i in np.ravel(idx))


def corpus(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) arrays of encoded sums (N, LINE): all 10,000 sums, 10% held out by ``seed``."""
    lines = np.stack([encode(f"{a:02d}+{b:02d}={a + b:03d}\n") for a in range(100) for b in range(100)])
    order = np.random.default_rng(seed).permutation(len(lines))
    return lines[order[1000:]], lines[order[:1000]]


def load_text() -> tuple[np.ndarray, np.ndarray, str]:
    """(train ids, held-out ids, alphabet) of the bundled text: its first 90% and last 10%."""
    with gzip.open(str(resources.files("torchlean.zoo") / "data" / TEXT), "rt", encoding="utf-8") as f:
        text = f.read()
    chars = "".join(sorted(set(text)))
    ids = encode(text, chars)
    cut = int(len(ids) * (1 - TEST_FRACTION))
    return ids[:cut], ids[cut:], chars


class CharGPT(Module):
    """The decoder-only transformer of the module docstring over ``vocab`` characters and contexts
    of at most ``block`` (defaults: the sums task)."""

    def __init__(self, vocab: int = len(CHARS), block: int = LINE, width: int = 64, layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.block = block
        self.tok, self.pos = Embedding(vocab, width), Embedding(block, width)
        self.blocks = ModuleList([TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0,
                                                          batch_first=True, norm_first=True)
                                  for _ in range(layers)])
        self.norm, self.head = LayerNorm(width), Linear(width, vocab)

    def forward(self, idx: Any) -> Any:
        """Next-character logits (N, L, vocab) for indices (N, L), L <= block."""
        return self.body(self.tok(idx))

    def body(self, x: Any) -> Any:
        """Everything after the token lookup: logits (N, L, vocab) for token vectors x (N, L, width)
        (the position embedding added, the blocks, the final norm and the head)."""
        import torchlean as tl

        from ..runtime.trace import constant

        n, length = x.shape[0], x.shape[1]
        # depends on the shape only: a compiled plan may keep it
        positions = constant(tl.tensor(np.arange(length)[None].repeat(n, 0), device=x.device))
        x = x + self.pos(positions)
        for block in self.blocks:
            x = block(x, is_causal=True)
        return self.head(self.norm(x))


class AfterLookup(Module):
    """``CharGPT.body`` as a model of its own: input the token vectors (N, L, width), i.e. the net
    after its token lookup (an exact copy of table rows), so its float error and its gradient proof
    are claims on a box of real inputs (the ``--certify`` claims; the lookup's own backward, a
    scatter-add into the token table, is not among them)."""

    def __init__(self, gpt: CharGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, x: Any) -> Any:
        return self.gpt.body(x)


def lookup_box(net: CharGPT, length: int) -> list[tuple[float, float]]:
    """The box of token vectors at ``length`` positions: per coordinate, the least and greatest
    entry over the token table's rows (every row lies in it), row-major like (1, length, width)."""
    w = net.tok.weight.numpy().astype(np.float64)
    per = list(zip(w.min(0).tolist(), w.max(0).tolist()))
    return per * length


def next_char_loss(logits: Any, target: Any) -> Any:
    """Mean cross-entropy of logits (N, L, V) against the next characters (N, L)."""
    from torchlean.nn import functional as F

    return F.cross_entropy(F.reshape(logits, (-1, logits.shape[-1])), F.reshape(target, (-1,)))


def model(kind: str = "text") -> CharGPT:
    """The untrained model for ``kind`` "text" or "sums" (initialised from ``torchlean.manual_seed``)."""
    if kind == "sums":
        return CharGPT()
    if kind != "text":
        raise ValueError(f"transformer: corpus must be 'text' or 'sums', got {kind!r}")
    return CharGPT(len(load_text()[2]), BLOCK)


def batches(kind: str = "text", batch_size: int = 64, seed: int = 0) -> Any:
    """The batch sampler ``step -> (inputs, next characters)`` of ``kind``: random sums, or random
    ``BLOCK``-character windows of the training text, drawn from a generator seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == "sums":
        lines, _ = corpus(seed)

        def draw_sums(step: int) -> tuple[np.ndarray, np.ndarray]:
            b = lines[rng.integers(0, len(lines), batch_size)]
            return b[:, :-1], b[:, 1:]
        return draw_sums
    ids = load_text()[0]

    def draw_text(step: int) -> tuple[np.ndarray, np.ndarray]:
        start = rng.integers(0, len(ids) - BLOCK, batch_size)[:, None] + np.arange(BLOCK + 1)
        w = ids[start]
        return w[:, :-1], w[:, 1:]
    return draw_text


def train(steps: int = 1500, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          progress: bool | None = None, corpus: str = "sums", **flags: Any
          ) -> tuple[CharGPT, list[dict[str, float]], float]:
    """(trained model, history of {step, loss, lr, time}, seconds) on ``corpus``; ``flags``: backend,
    dtype, device (``zoo._fit``)."""
    import torchlean as tl

    tl.manual_seed(seed)
    net = model(corpus)
    done = _fit.fit(net, batches(corpus, batch_size, seed), steps, next_char_loss, lr, seed, progress,
                    task="classification", **flags)
    return net, done.history, done.time_s


def bits_per_char(net: Any, ids: np.ndarray, block: int = BLOCK) -> float:
    """Mean cross-entropy (bits per character) of ``net`` predicting ``ids`` in consecutive windows of
    ``block`` + 1 characters (each window predicts its last ``block`` from what precedes them in it)."""
    n = (len(ids) - 1) // block
    x = ids[:n * block].reshape(n, block)
    y = ids[1:n * block + 1].reshape(n, block)
    logits = _fit.predict(net, x)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nats = -np.take_along_axis(logp, y[..., None], -1).mean()
    return float(nats / np.log(2))


def unigram_bits(train_ids: np.ndarray, test_ids: np.ndarray) -> float:
    """Bits per character of the held-out text under the training text's character frequencies
    (add-one smoothed): the baseline a model that ignores context reaches."""
    counts = np.bincount(train_ids, minlength=int(max(train_ids.max(), test_ids.max())) + 1) + 1.0
    return float(-np.log2(counts[test_ids] / counts.sum()).mean())


def greedy(net: Any, prompts: np.ndarray, length: int = LINE - PROMPT) -> np.ndarray:
    """Greedy continuations (N, length) of encoded prompts (N, P)."""
    seq = np.array(prompts)
    for _ in range(length):
        logits = _fit.predict(net, seq)[:, -1]
        seq = np.concatenate([seq, logits.argmax(-1)[:, None]], axis=1)
    return seq[:, prompts.shape[1]:]


def sample(net: Any, prompt: str, rng: np.random.Generator, temperature: float = 1.0, chars: str = CHARS,
           length: int = LINE, stop: str | None = "\n") -> str:
    """Text sampled after ``prompt`` (softmax with ``temperature``) up to ``length`` characters in all
    or the first ``stop`` character; contexts are cut to the model's ``block``."""
    seq = encode(prompt, chars)
    while len(seq) < length:
        logits = _fit.predict(net, seq[None, -net.block:])[0, -1] / temperature
        p = np.exp(logits - logits.max())
        nxt = int(rng.choice(len(chars), p=p / p.sum()))
        seq = np.append(seq, nxt)
        if stop is not None and chars[nxt] == stop:
            break
    return decode(seq, chars).rstrip("\n")


def run(args: Any) -> int:
    """``python -m torchlean transformer`` (flags in ``torchlean.__main__``)."""
    import torchlean as tl

    flags = {k: getattr(args, k) for k in _fit.DEVICE_DEFAULTS}
    net, history, seconds = train(args.steps, seed=args.seed, progress=args.progress, corpus=args.corpus,
                                  batch_size=args.batch_size or (64 if args.corpus == "sums" else 32),
                                  lr=args.lr, **flags)
    where = f"{args.dtype} on {args.device}, {args.backend} backend"
    rng = np.random.default_rng(args.seed)
    if args.corpus == "sums":
        _, test = corpus(args.seed)
        got = greedy(net, test[:, :PROMPT])
        exact = float(np.mean((got[:, :3] == test[:, PROMPT:PROMPT + 3]).all(1)))
        print(f"char GPT (2 layers, width 64, {net.num_parameters()} parameters; {where}) on 9,000 sums "
              f"'AA+BB=CCC': {args.steps} steps in {seconds:.1f} s, final loss {history[-1]['loss']:.3f}; "
              f"exact-match accuracy on the 1,000 held-out sums: {exact:.1%}")
        for prompt in ("12+", "57+", "9"):
            print(f"  sample: {sample(net, prompt, rng, args.temperature)}")
    else:
        train_ids, test_ids, chars = load_text()
        bpc = bits_per_char(net, test_ids)
        print(f"char GPT (2 layers, width 64, context {BLOCK}, {net.num_parameters()} parameters; {where}) "
              f"on Genesis-Exodus (King James Bible, {len(train_ids):,} training characters): {args.steps} "
              f"steps in {seconds:.1f} s, final training loss {history[-1]['loss']:.3f} nats; held-out "
              f"(last 10%, {len(test_ids):,} characters): loss {bpc * np.log(2):.3f} nats = {bpc:.3f} bits "
              f"per character (unigram baseline "
              f"{unigram_bits(train_ids, test_ids):.3f})")
        text = sample(net, PROMPT_TEXT, rng, args.temperature, chars, length=200, stop=None)
        print(f"  sample: {text!r}")
    _fit.report_log(args, history)
    if args.certify:
        from .claims import print_claims

        # integer tokens are no box: the claims are about the net after its token lookup (an exact
        # copy of a table row), on the box of the table's rows at every one of the context's positions
        # the epsilon at the first EPS_CONTEXT positions (the exact error column's cost grows with
        # the context: ~90 s at 4 on the loaded 2-core machine, far past the budget at 64); the proof
        # at the full one
        length, vocab, width = net.block, net.head.out_features, net.tok.weight.shape[1]
        short = min(length, EPS_CONTEXT)
        x = net.tok(tl.tensor(np.arange(short)[None] % vocab)).numpy()
        print_claims(args, AfterLookup(net), x, lookup_box(net, short),
                     f"the char GPT after its token lookup, context {short}, on the box of the token "
                     f"table's rows", "chargpt_after_lookup",
                     lambda: AfterLookup(model(args.corpus)), (1, length, width),
                     note="covered: the position add, both blocks, the norm and the head (the epsilon at "
                          f"contexts of {short} characters, the proof at {length}); not covered: the "
                          "token lookup's backward (a scatter-add into the token table) and sampling; the "
                          "causal mask's -inf scores are exact (exp(-inf) = 0), layer norm and softmax "
                          "are one error entry each (errornorm.py)")
    return 0
