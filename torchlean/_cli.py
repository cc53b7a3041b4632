"""The one error path every command line shares (``torchlean``, ``torchlean.proofs``,
``torchlean.verify``, ``torchlean.floats``): argparse errors in one line, numeric flags validated
(finite, in range), negative numbers accepted as values (``--box -1:1``), and ``guard`` turning
every expected failure into one line on stderr with a non-zero exit status, never a traceback.

Exit status: 0 success, 1 a claim was rejected or a run failed (the command decides), 2 bad
input, 3 an internal error (a bug: the message names the exception; set ``TORCHLEAN_DEBUG=1`` for
the traceback), 130 interrupted.

Limits named here are the ones a user can hit from the command line; each error names its limit.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

#: the longest ``--timeout`` any command accepts (seconds): a week
MAX_TIMEOUT_S = 7 * 24 * 3600.0
#: sampled points per run (each costs a few float64 vectors of the input size)
MAX_SAMPLES = 10_000_000
#: box bisections of ``floats bound --splits`` (each costs about 3 unsplit bounds)
MAX_SPLITS = 100_000
#: worker processes
MAX_JOBS = 256
#: an error message is cut to this many characters
MAX_MESSAGE = 400


class CliError(Exception):
    """Bad input: printed as one line, exit status 2."""


def one_line(message: object) -> str:
    """The first line of ``message``, cut to ``MAX_MESSAGE`` characters."""
    text = str(message).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def about(path: object, error: BaseException) -> str:
    """``path: message`` in one line, naming the file once: many loaders' messages already start
    with the path (``bad.onnx: bad.onnx: not a readable ONNX model`` read twice)."""
    text = one_line(error) or type(error).__name__
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


def require_certificate(path: object, cert: object) -> str:
    """The ``kind`` of a parsed certificate file; CliError (one line, status 2) for JSON that is no
    torchlean certificate at all (a list, a training log): the checkers answered those "rejected"
    with a reason about networks or fields that sent the reader the wrong way. Only refuses."""
    if not isinstance(cert, dict):
        raise CliError(f"{path}: not a certificate (a JSON {type(cert).__name__}, not an object)")
    kind = cert.get("kind")
    if not isinstance(kind, str):
        fmt = cert.get("format")
        what = f" (a {fmt!r} file)" if isinstance(fmt, str) else ""
        raise CliError(f"{path}: not a torchlean certificate{what}: it has no 'kind'")
    return kind


# a value starting with "-" that is a number (or a box such as -1:1, or -inf): never a flag
_NEGATIVE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``CliError``, exit 2 in ``guard``) and negative numbers,
    ``-1:1`` and ``-inf`` read as values, not flags. Subparsers are of this class too.
    ``examples``: command lines shown, as written, at the end of ``--help``."""

    def __init__(self, *args: Any, examples: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE
        self.examples = list(examples)

    def format_help(self) -> str:
        text = super().format_help()
        if self.examples:
            text += "\nexamples:\n" + "".join(f"  {e}\n" for e in self.examples)
        return text

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", Parser)
        return super().add_subparsers(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see --help)")


def number(kind: type = float, low: float = 0.0, high: float = math.inf, low_open: bool = True,
           what: str = "value") -> Callable[[str], Any]:
    """An argparse ``type=``: a finite ``kind`` (int or float) in (low, high] (``low_open``) or
    [low, high]; the error names the range. NaN and the infinities are always refused."""
    lo_txt = f"> {low:g}" if low_open else f">= {low:g}"
    need = f"a finite {what} {lo_txt}" + (f" and <= {high:g}" if high != math.inf else "")

    def convert(text: str) -> Any:
        try:
            if not text.isascii():  # (float() reads Arabic-Indic digits; a flag does not)
                raise ValueError(text)
            value = kind(text.strip())
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}")
        if (value <= low if low_open else value < low) or value > high:
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its own messages
    return convert


#: ``--timeout`` everywhere: finite, > 0, at most a week
timeout_s = number(float, 0.0, MAX_TIMEOUT_S, what="number of seconds")
#: ``--samples``: 0 (none) up to MAX_SAMPLES
samples = number(int, 0, MAX_SAMPLES, low_open=False, what="sample count")
#: ``--splits``
splits = number(int, 0, MAX_SPLITS, low_open=False, what="split count")
#: ``--jobs``
jobs = number(int, 1, MAX_JOBS, low_open=False, what="job count")


def check_timeout(value: Any, name: str = "timeout") -> float:
    """A timeout given by a caller or read from a file: finite, > 0, at most MAX_TIMEOUT_S."""
    try:
        t = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CliError(f"{name} {value!r} is not a number") from None
    if not (math.isfinite(t) and 0 < t <= MAX_TIMEOUT_S):
        raise CliError(f"{name} {value!r} must be finite, > 0 and <= {MAX_TIMEOUT_S:g} s")
    return t


def check_writable(path: str | None, flag: str) -> None:
    """Refuse (CliError, before any work is done) an output path that is a directory or whose
    folder cannot be written; None passes."""
    if path is None:
        return
    p = os.path.abspath(path)
    if os.path.isdir(p):
        raise CliError(f"{flag} {path}: is a directory")
    if os.path.exists(p) and not os.path.isfile(p):
        raise CliError(f"{flag} {path}: not a regular file")
    folder = os.path.dirname(p)
    while not os.path.exists(folder):  # atomic writes create missing folders
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: cannot write in {folder}")


#: image file suffixes matplotlib writes (``--plot``, ``--samples``, ``plot -o``)
IMAGE_FORMATS = {"png", "svg", "svgz", "pdf", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp", "gif", "pgf",
                 "raw", "rgba", "avif"}


def check_image(path: str | None, flag: str) -> None:
    """Refuse (CliError, before any work) an image path whose suffix matplotlib cannot write: it
    would refuse it only after the work (training, bounding) was done. None passes."""
    suffix = os.path.splitext(path or "")[1].lower().lstrip(".")
    if path and suffix not in IMAGE_FORMATS:
        raise CliError(f"{flag} {path}: not an image name (end it in .png, .svg, .pdf, ...)")


def check_not_input(path: str | None, flag: str, *inputs: str | None) -> None:
    """Refuse (CliError) an output path that is one of the command's input files: ``--cert
    prop.vnnlib`` would replace the property with the certificate."""
    if path is None or not os.path.exists(path):
        return
    for src in inputs:
        if src is not None and os.path.exists(src) and os.path.samefile(path, src):
            raise CliError(f"{flag} {path}: is an input of this command; it would be overwritten")


def guard(run: Callable[[], int], errors: tuple[type[BaseException], ...] = (), prog: str = "") -> int:
    """Run ``run()`` and return its exit status; every failure becomes one line on stderr.

    ``errors`` are the caller's own bad-input exceptions (exit 2) besides ``CliError``, OSError
    (a file that cannot be read or written), UnicodeError and the resource limits (deep nesting,
    memory). Anything else is a bug: "internal error" and exit 3 (traceback with TORCHLEAN_DEBUG=1).
    """
    head = f"{prog}: " if prog else ""
    try:
        return run()
    except (CliError, *errors) as e:
        _say(f"{head}error: {one_line(e)}")
        return 2
    except KeyboardInterrupt:
        _say(f"{head}interrupted")
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        _say(f"{head}error: {where}{one_line(e.strerror or e)}")
        return 2
    except UnicodeError as e:
        _say(f"{head}error: input is not valid UTF-8 ({one_line(e)})")
        return 2
    except RecursionError:
        _say(f"{head}error: input nested too deeply (Python recursion limit)")
        return 2
    except MemoryError:
        _say(f"{head}error: out of memory (input or requested size too large)")
        return 2
    except SystemExit:
        raise
    except Exception as e:  # a bug: still one line, but a distinct status the tests look for
        if os.environ.get("TORCHLEAN_DEBUG"):
            raise
        _say(f"{head}internal error: {type(e).__name__}: {one_line(e)} (TORCHLEAN_DEBUG=1 for details)")
        return 3


def add_progress(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress`` (default: a bar only when stderr is a terminal; with
    ``--progress`` plain lines every 10 s elsewhere too, e.g. in CI logs: ``torchlean.progress``)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="report progress on stderr (default: only on a terminal)")


def progress_of(args: argparse.Namespace) -> bool | None:
    """The ``enabled`` value for ``torchlean.progress.bar``: off under ``--quiet``."""
    return False if getattr(args, "quiet", False) else args.progress


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status when it printed help/version or failed
    (one line on stderr)."""
    try:
        return parser.parse_args(argv)
    except CliError as e:
        _say(f"error: {one_line(e)}")
        return 2
    except SystemExit as e:  # --help / --version printed and "exited"
        return e.code if isinstance(e.code, int) else 0


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
