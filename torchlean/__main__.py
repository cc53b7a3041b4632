"""``python -m torchlean``: train the Auto MPG MLP, or run a quickstart example.

Errors are one line on stderr: exit 2 for bad input and usage (unknown command, bad flag, a log
``plot`` cannot read, an output folder that cannot be written), exit 1 for a run that cannot be
carried out (e.g. ``--device cuda`` on a machine without cupy or a GPU, a diverging run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

from torchlean import _cli

UsageError = _cli.CliError  # a command line argparse rejected (one line, exit 2)
_Parser = _cli.Parser  # the shared parser: one-line errors, negative numbers read as values


def _number(parse: Any, ok: Any, kind: str, need: str) -> Any:
    """An argparse ``type=``: parse with ``parse``, then require ``ok(value)``."""
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {need}, got {text}")
        return value
    return convert


_positive_int = _number(int, lambda v: v >= 1, "a whole number", "a positive number")
_non_negative_int = _number(int, lambda v: v >= 0, "a whole number", "a number >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number", "a positive finite number")


def _schedule(name: str, steps: int, lr: float) -> Any:
    """A function optimizer -> scheduler for ``--scheduler``, or None."""
    from torchlean.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR, linear_warmup

    total = max(steps, 1)
    return {
        "none": None,
        "cosine": lambda opt: CosineAnnealingLR(opt, T_max=total),
        "onecycle": lambda opt: OneCycleLR(opt, max_lr=lr, total_steps=total),
        "warmup": lambda opt: linear_warmup(opt, warmup_steps=max(total // 10, 1)),
    }[name]


SCHEDULES = ("none", "cosine", "onecycle", "warmup")

#: command -> the example command lines its ``--help`` ends with (tests/test_cli_errors.py parses each)
EXAMPLES = {
    "torchlean": ["python -m torchlean demo", "python -m torchlean mlp --steps 300 --log adam.json",
                  "python -m torchlean quickstart tensors"],
    "mlp": ["python -m torchlean mlp --steps 300 --log adam.json",
            "python -m torchlean mlp --optimizer sgd --lr 0.05 --scheduler cosine --log sgd-cosine.json"],
    "cnn": ["python -m torchlean cnn --steps 400 --certify 0.01 --certify-n 20"],
    "resnet": ["python -m torchlean resnet --certify 0.01 --certify-n 5 --plot certified.png"],
    "lstm": ["python -m torchlean lstm --steps 300 --certify"],
    "gru": ["python -m torchlean gru --hidden 16 --log gru.json"],
    "ppo": ["python -m torchlean ppo --updates 150 --certify"],
    "pinn": ["python -m torchlean pinn --certify --plot residual.png"],
    "autoencoder": ["python -m torchlean autoencoder --steps 1500 --certify"],
    "vae": ["python -m torchlean vae --samples samples.png"],
    "transformer": ["python -m torchlean transformer --corpus sums --steps 1500",
                    "python -m torchlean transformer --steps 200 --certify"],
    "fno": ["python -m torchlean fno --steps 800 --log fno.json"],
    "quickstart": ["python -m torchlean quickstart autograd"],
    "plot": ["python -m torchlean plot adam.json sgd-cosine.json -o curves.png"],
    "demo": ["python -m torchlean demo --out demo-artifacts"],
}


def _run_flags(p: argparse.ArgumentParser, steps: int, what: str = "optimisation steps",
               steps_type: Any = _non_negative_int) -> None:
    """--steps, --seed, --log and --progress/--no-progress: every training command has them."""
    p.add_argument("--steps", type=steps_type, default=steps, help=f"{what} (default {steps})")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="initialisation and shuffling seed")
    p.add_argument("--log", metavar="PATH", help="write a JSON training log here")
    _cli.add_progress(p)


def _device_flags(p: argparse.ArgumentParser) -> None:
    """--device, --dtype and --backend: every training command has them (``cuda`` without cupy or a
    GPU is a one-line error; ``compiled`` runs the training step through runtime.compiled)."""
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda needs cupy and a GPU; never falls back to the CPU")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--backend", choices=["eager", "compiled"], default="eager",
                   help="compiled: the traced, planned training step (bit-identical to eager)")


def _trainer_flags(p: argparse.ArgumentParser, batch_size: int) -> None:
    """The ``Trainer``'s own flags, for the commands that train through it (mlp, cnn, resnet,
    lstm, gru)."""
    p.add_argument("--batch-size", type=_positive_int, default=batch_size,
                   help=f"batch size (default {batch_size})")
    p.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop", "adagrad"], default="adam")
    _device_flags(p)
    p.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz, no pickle) here")
    p.add_argument("--log-every", type=_positive_int, default=10, help="steps between log records")


def _claims_flag(p: argparse.ArgumentParser) -> None:
    """--certify for the commands whose checked claims are the model's own (no robustness question):
    the @verified gradient proof at its shapes and the float32 error bound on its data box
    (``zoo.claims.print_claims``)."""
    p.add_argument("--certify", action="store_true",
                   help="after training, print the checked claims: the @verified gradient proof at the "
                        "model's shapes and a certified float32 error bound on the data box "
                        "($TORCHLEAN_PROOF_BUDGET seconds each, default 300)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torchlean", examples=EXAMPLES["torchlean"],
                     description="torchlean: write, run, inspect and verify neural networks. Also: "
                                 "python -m torchlean.verify (ONNX + VNN-LIB), torchlean.floats "
                                 "(rounding error), torchlean.proofs (proof artifacts).")
    parser.add_argument("--version", action="version", version="torchlean 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    mlp = sub.add_parser("mlp", help="train the Auto MPG regression MLP (7→32→1) and report test MSE",
                         description="Train the Auto MPG MLP; print the test MSE (normalised target) before "
                                     "and after, and one held-out prediction in mpg.")
    _run_flags(mlp, 200)
    _trainer_flags(mlp, 32)
    mlp.add_argument("--scheduler", choices=list(SCHEDULES), default="none",
                     help="learning-rate schedule over the run (warmup: linear over the first 10%%)")
    mlp.add_argument("--clip", type=_positive_float, metavar="MAX_NORM", help="clip the gradient norm")

    for kind, what in (("cnn", "a CNN (conv-relu-maxpool x2, linear)"),
                       ("resnet", "a ResNet (stem, two residual blocks with BatchNorm2d, avgpool, linear)")):
        img = sub.add_parser(kind, help=f"train {what.split(' (')[0]} on the 8x8 digits; --certify EPS",
                             description=f"Train {what} on the bundled 8x8 digits (UCI optdigits); print "
                                         "test accuracy. --certify EPS verifies each of the first N test "
                                         "images at L-inf radius EPS (complete verification, every verdict "
                                         "checked by the trusted checker).")
        _run_flags(img, 400)
        _trainer_flags(img, 64)
        img.add_argument("--certify", type=_positive_float, metavar="EPS",
                         help="certified accuracy at L-inf radius EPS (pixels in [0, 1])")
        img.add_argument("--certify-n", type=_positive_int, default=20, metavar="N",
                         help="how many test images to certify (default 20)")
        img.add_argument("--certify-timeout", type=_positive_float, default=10.0, metavar="S",
                         help="seconds per image (default 10)")
        img.add_argument("--plot", metavar="PNG", help="with --certify: certified accuracy at EPS/4, EPS/2, "
                         "3EPS/4 and EPS into this image (needs matplotlib)")

    for kind in ("lstm", "gru"):
        name, article = kind.upper(), "an" if kind == "lstm" else "a"
        seq = sub.add_parser(kind, help=f"train {article} {name} forecaster on a generated predator-prey "
                                        "series",
                             description=f"Train {article} {name} (hidden --hidden) to forecast the next "
                                         "sample of a noisy Lotka-Volterra series from 16 past ones; test "
                                         "MSE against the persistence baseline (test windows later in time).")
        _run_flags(seq, 300)
        _trainer_flags(seq, 32)
        seq.add_argument("--hidden", type=_positive_int, default=32, help="hidden size (default 32)")
        _claims_flag(seq)

    ppo = sub.add_parser("ppo", help="train PPO on CartPole; --certify: check safety properties",
                         description="Train a PPO agent on CartPole (numpy dynamics of CartPole-v1) and "
                                     "report its returns; --certify decides 'a pole falling right is "
                                     "pushed right' (and the mirror) on whole boxes of states, each "
                                     "verdict checked.")
    ppo.add_argument("--updates", "--steps", dest="updates", type=_positive_int, default=150,
                     help="PPO updates of 8x128 steps (150); --steps is the same flag")
    _device_flags(ppo)
    ppo.add_argument("--seed", type=_non_negative_int, default=0, help="initialisation and sampling seed")
    ppo.add_argument("--log", metavar="PATH", help="write a JSON training log (mean return per update)")
    ppo.add_argument("--certify", action="store_true", help="decide the safety properties (checked)")
    ppo.add_argument("--certify-timeout", type=_positive_float, default=30.0, metavar="S",
                     help="seconds per property (default 30)")
    _cli.add_progress(ppo)

    pinn = sub.add_parser("pinn", help="train a physics-informed network (1-D Poisson); --certify it",
                          description="Train an MLP on u'' = -x(x+3)e^x, u(0) = u(1) = 0 with a "
                                      "physics-informed loss (second derivatives by autograd); --certify "
                                      "proves a bound on |u'' - f| over the whole of [0, 1] (checked).")
    _run_flags(pinn, 3000, "Adam steps", _positive_int)
    _device_flags(pinn)
    pinn.add_argument("--certify", action="store_true", help="prove a bound on the residual over [0, 1]")
    pinn.add_argument("--pieces", type=_positive_int, default=64, help="intervals to choose the bound on")
    pinn.add_argument("--certify-timeout", type=_positive_float, default=120.0, metavar="S")
    pinn.add_argument("--plot", metavar="PNG", help="with --certify: the residual and its bounds")

    for kind, what in (("autoencoder", "an autoencoder 64-32-8-32-64"), ("vae", "a variational autoencoder")):
        gen = sub.add_parser(kind, help=f"train {what} on the 8x8 digits",
                             description=f"Train {what} on the bundled 8x8 digits; test reconstruction "
                                         "error against the mean-image baseline.")
        _run_flags(gen, 1500, "Adam steps", _positive_int)
        _device_flags(gen)
        _claims_flag(gen)
        if kind == "vae":
            gen.add_argument("--samples", metavar="PNG", help="16 images decoded from the prior")

    gpt = sub.add_parser("transformer", help="train a character-level GPT on a public-domain text",
                         description="Train a 2-layer causal transformer on Genesis and Exodus (King James "
                                     "Bible, bundled) and report held-out bits per character and a sample; "
                                     "--corpus sums: on 9,000 sums 'AA+BB=CCC' (generated), exact-match "
                                     "accuracy of greedy completions on the 1,000 held-out sums.")
    _run_flags(gpt, 1500, "Adam steps", _positive_int)
    _device_flags(gpt)
    gpt.add_argument("--corpus", choices=["text", "sums"], default="text",
                     help="text: the King James Genesis-Exodus (default); sums: two-digit addition")
    gpt.add_argument("--batch-size", type=_positive_int, default=None,
                     help="sequences per step (default 32 windows of text, 64 sums)")
    gpt.add_argument("--lr", type=_positive_float, default=3e-3, help="Adam learning rate (default 3e-3)")
    gpt.add_argument("--temperature", type=_positive_float, default=0.8, help="sampling temperature (0.8)")
    _claims_flag(gpt)

    fno = sub.add_parser("fno", help="train a Fourier neural operator on viscous Burgers (1-D)",
                         description="Train a 1-D Fourier neural operator (DFT matrices, no FFT primitive) "
                                     "on the map u0 -> u(t=0.5) of viscous Burgers (generated, pseudo-"
                                     "spectral RK4); relative L2 error on held-out initial conditions.")
    _run_flags(fno, 800, "Adam steps", _positive_int)
    _device_flags(fno)
    _claims_flag(fno)

    qs = sub.add_parser("quickstart", help="run a runnable example: tensors, autograd or mlp",
                        description="Run one of the quickstart examples (their source: examples/).")
    qs.add_argument("example", choices=["tensors", "autograd", "mlp"])

    plot = sub.add_parser("plot", help="draw training logs (loss and metrics over steps) into an image",
                          description="Draw one or more JSON training logs (mlp --log, Trainer.train("
                                      "log_path=...)) into a PNG/SVG/PDF, one panel per metric, logs "
                                      "overlaid. Needs matplotlib: pip install 'torchlean[plot]'.")
    plot.add_argument("logs", nargs="+", metavar="LOG", help="training log JSON files")
    plot.add_argument("-o", "--out", default="curve.png", help="image to write (default curve.png)")
    plot.add_argument("--metric", action="append", dest="metrics", metavar="NAME",
                      help="draw only this record key (repeatable; default: every metric)")
    plot.add_argument("--title", default=None)

    demo = sub.add_parser("demo", help="the main job: train, prove autograd, certify rounding error",
                          description="Train a small Auto MPG MLP, discharge its @verified autograd "
                                      "obligation with an SMT solver and replay it through the trusted "
                                      "checker, then certify its float32 rounding error.")
    demo.add_argument("--out", default=None, metavar="DIR",
                      help="where artifacts go (default: a new temporary folder, printed at the end)")
    demo.add_argument("--steps", type=_non_negative_int, default=300, help="training steps (default 300)")
    demo.add_argument("--solver", choices=["cvc5", "z3"], default="cvc5")
    demo.add_argument("--seed", type=_non_negative_int, default=0)
    for name, command in sub.choices.items():
        command.examples = EXAMPLES[name]
    return parser


def run_mlp(args: argparse.Namespace) -> int:
    import numpy as np

    import torchlean as tl
    from torchlean.zoo import auto_mpg

    data = auto_mpg.load()
    tl.manual_seed(args.seed)
    model = auto_mpg.mlp()
    trainer = tl.Trainer(model, task="regression", optimizer=args.optimizer, lr=args.lr,
                         backend=args.backend, dtype=args.dtype, device=args.device, seed=args.seed,
                         scheduler=_schedule(args.scheduler, args.steps, args.lr), clip=args.clip)
    test = data.test()
    print(f"Auto MPG: {len(data.x_train)} train / {len(data.x_test)} test rows "
          f"({data.dropped_rows} rows with missing horsepower dropped); MLP 7→32→1, "
          f"{model.num_parameters()} parameters; {args.dtype} on {args.device}, {args.backend} backend")
    before = trainer.eval(test)["loss"]
    print(f"test MSE (normalised target) before: {before:.4f}")
    trained = trainer.train(data.train(), steps=args.steps, batch_size=args.batch_size,
                            log_every=args.log_every, log_path=args.log,
                            progress=args.progress)
    after = trained.eval(test)["loss"]
    note = " (interrupted)" if trained.interrupted else ""
    print(f"test MSE (normalised target) after {trained.steps} steps{note}: {after:.4f}")
    row = 0  # the first held-out car
    pred = data.target_to_original(trained.predict(data.x_test[row:row + 1]))[0, 0]
    truth = data.target_to_original(data.y_test[row:row + 1])[0, 0]
    print(f"held-out car #{row}: predicted {pred:.1f} mpg, actual {truth:.1f} mpg "
          f"(error {abs(pred - truth):.1f})")
    if not np.isfinite(after):
        print("torchlean: error: training diverged (non-finite loss); try a smaller --lr", file=sys.stderr)
        return 1
    if args.log:
        print(f"training log: {args.log}")
    if args.save:
        print(f"checkpoint: {trained.save(args.save)}")
    return 0


#: zoo command -> the ``torchlean.zoo`` module whose ``run(args)`` carries it out
ZOO = {"cnn": "cnn", "resnet": "cnn", "lstm": "sequence", "gru": "sequence", "ppo": "ppo", "pinn": "pinn",
       "autoencoder": "generative", "vae": "generative", "transformer": "transformer", "fno": "fno"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m torchlean`` and the ``torchlean`` script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:  # (the top parser's own prog is the line's head already: said once)
        msg = _cli.one_line(e)
        print(f"torchlean: error: {msg.removeprefix('torchlean: ')}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version print and "exit"; report it as a return code
        return e.code if isinstance(e.code, int) else 0
    from torchlean.plot import PlotError
    from torchlean.runtime.backends import DeviceError
    from torchlean.runtime.checkpoint import CheckpointError

    try:
        with warnings.catch_warnings():
            # numpy's overflow warnings of a diverging run would bury the one-line error it ends in
            warnings.simplefilter("ignore", RuntimeWarning)
            return _run(args)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (PlotError, CheckpointError, OSError) as e:  # bad input (a log or checkpoint that cannot
        # be read, a folder that cannot be written): status 2, as every torchlean command answers it
        return _cli.guard(_raiser(e), (PlotError, CheckpointError), prog="torchlean")
    except (DeviceError, ValueError, RuntimeError) as e:  # the run could not be carried out
        print(f"torchlean: error: {_cli.one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("torchlean: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, or a CliError (bad input, status 2): one line all the same
        return _cli.guard(_raiser(e), prog="torchlean")


IMAGE_FORMATS = _cli.IMAGE_FORMATS  # (kept importable from here)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse (CliError, exit 2) an output path that cannot be written before any training is
    done: a run must not end by losing its result to a typo in --save."""
    for flag in ("log", "save", "plot", "samples"):
        _cli.check_writable(getattr(args, flag, None), f"--{flag}")
    if getattr(args, "plot", None) and not getattr(args, "certify", True):  # (cnn, resnet, pinn)
        raise _cli.CliError(f"--plot needs --certify{' EPS' if args.command in ('cnn', 'resnet') else ''}")
    images = [(f"--{f}", getattr(args, f, None)) for f in ("plot", "samples")]
    if args.command == "plot":
        _cli.check_writable(args.out, "-o")
        _cli.check_not_input(args.out, "-o", *args.logs)
        images.append(("-o", args.out))
    for flag, path in images:  # (matplotlib would refuse the suffix only after the training)
        _cli.check_image(path, flag)
    if args.command == "demo" and args.out:
        out = os.path.abspath(args.out)
        if os.path.exists(out) and not os.path.isdir(out):
            raise _cli.CliError(f"--out {args.out}: not a directory")
        _cli.check_writable(os.path.join(out, "x"), "--out")


def _run(args: argparse.Namespace) -> int:
    """The parsed command, carried out."""
    _check_outputs(args)
    if args.command == "mlp":
        return run_mlp(args)
    if args.command in ZOO:  # each zoo command's ``run(args)``, imported only when asked for
        import importlib

        return importlib.import_module(f"torchlean.zoo.{ZOO[args.command]}").run(args)
    if args.command == "plot":
        from torchlean.plot import plot_logs

        print(f"wrote {plot_logs(args.logs, args.out, args.metrics, args.title)}")
        return 0
    if args.command == "demo":
        from pathlib import Path

        from torchlean.zoo import demo

        # never litter the current folder: without --out the artifacts go to a fresh temporary one
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="torchlean-demo-"))
        return demo.run(out, steps=args.steps, solver=args.solver, seed=args.seed)
    from torchlean.zoo.quickstart import run

    run(args.example)
    return 0


def _raiser(e: BaseException) -> Any:
    def run() -> int:
        raise e
    return run


if __name__ == "__main__":
    sys.exit(main())
