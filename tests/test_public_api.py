"""The public surface is declared and documented: every public module has ``__all__``, every name
in it exists, every public callable in it (functions, classes and their public methods) has a
docstring (what ``help()`` and editors show), and ``Tensor`` defines torch's method forms of the
spec primitives instead of conjuring them in ``__getattr__``."""

import importlib
import inspect

import pytest

import torchlean as tl
from torchlean.apidoc import PUBLIC_MODULES as PUBLIC  # the modules users import


def _public_names(modname):
    mod = importlib.import_module(modname)
    assert hasattr(mod, "__all__"), f"{modname} has no __all__"
    return mod, list(mod.__all__)


@pytest.mark.parametrize("modname", PUBLIC)
def test_every_public_module_declares_all_and_defines_it(modname):
    mod, names = _public_names(modname)
    assert len(names) == len(set(names)), f"{modname}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{modname}.__all__ names undefined {missing}"
    star: dict = {}
    exec(f"from {modname} import *", star)  # noqa: S102 - our own module
    assert set(star) - {"__builtins__"} == set(names)


def test_functional_exports_no_internals():
    import torchlean.nn.functional as F

    for internal in ("Any", "apply", "namespace_of", "Sequence", "np", "ShapeError", "norm_axis", "Tensor",
                     "TENSOR_METHODS", "annotations"):
        assert internal not in F.__all__, internal
    star: dict = {}
    exec("from torchlean.nn.functional import *", star)  # noqa: S102
    assert "apply" not in star and "Any" not in star and "relu" in star and "conv1d" in star


def _undocumented(modname):
    mod, names = _public_names(modname)
    out = []
    for name in names:
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        # its own docstring (a class does not inherit one: a layer without its own would show Module's)
        if not (obj.__doc__ or "").strip():
            out.append(f"{modname}.{name}")
        if inspect.isclass(obj):
            for mname, member in vars(obj).items():
                # methods only: properties and class attributes are data, documented by the class
                if mname.startswith("_") or isinstance(member, property):
                    continue
                if not callable(getattr(member, "__func__", member)):
                    continue
                # inspect.getdoc inherits an overridden method's docstring from its base, as help() does
                if not (inspect.getdoc(getattr(obj, mname)) or "").strip():
                    out.append(f"{modname}.{name}.{mname}")
    return out


#: in the trusted checker (torchlean/certificates/, edited only with its own review): still to be
#: documented there; the test below fails once they are, so that this list only shrinks
KNOWN_UNDOCUMENTED = {"torchlean.floats.Format.to_dict", "torchlean.floats.Format.from_dict"}


@pytest.mark.parametrize("modname", PUBLIC)
def test_every_public_callable_has_a_docstring(modname):
    missing = _undocumented(modname)
    new = [m for m in missing if m not in KNOWN_UNDOCUMENTED]
    assert not new, f"{len(new)} without a docstring: {new}"
    depth = modname.count(".") + 2  # module.Class.method
    mine = {k for k in KNOWN_UNDOCUMENTED if k.startswith(modname + ".") and k.count(".") == depth}
    assert mine <= set(missing), f"documented now, drop from KNOWN_UNDOCUMENTED: {mine - set(missing)}"


def test_the_docstring_check_fails_on_a_missing_docstring(monkeypatch):
    """The check itself can fail: a public function stripped of its docstring is reported."""
    import torchlean.nn.functional as F

    monkeypatch.setattr(F.relu, "__doc__", None)
    assert "torchlean.nn.functional.relu" in _undocumented("torchlean.nn.functional")


def test_tensor_defines_torch_method_forms_of_the_primitives():
    """Every spec primitive that ``torch.Tensor`` has as a method is a real, documented method of
    ``Tensor`` (visible to ``dir``/``help``/editors), and so is every entry of the method table."""
    from torchlean.runtime import functional
    from torchlean.runtime.rules import RULES

    torch = pytest.importorskip("torch")
    assert "__getattr__" not in vars(tl.Tensor)
    with_method = [p for p in RULES if hasattr(torch.Tensor, p)]
    assert len(with_method) >= 20
    names = set(with_method) | set(functional.TENSOR_METHODS) | {"argmax", "argmin", "long", "item", "float"}
    for name in sorted(names):
        if name in ("concat",):  # not a torch.Tensor method
            continue
        assert name in dir(tl.Tensor), name
        assert (inspect.getdoc(getattr(tl.Tensor, name)) or "").strip(), f"Tensor.{name} has no docstring"
    with pytest.raises(AttributeError):
        tl.tensor([1.0]).no_such_method  # noqa: B018


def test_apidoc_writes_every_public_name_with_its_docstring(tmp_path):
    from torchlean.apidoc import main

    assert main(["-o", str(tmp_path / "api")]) == 0
    for modname in PUBLIC:
        page = (tmp_path / "api" / f"{modname}.md").read_text()
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            assert f"`{name}" in page, (modname, name)
        if "torchlean.nn.functional" == modname:
            sig = "argmax(x: 'Tensor', dim: 'int | None' = None, keepdim: 'bool' = False) -> 'Tensor'"
            assert f"## `{sig}`" in page
            assert "Index of the first maximum" in page
    assert "torchlean.nn.init" in (tmp_path / "api" / "index.md").read_text()


def _example(obj) -> str:
    """The ``Example::`` block of ``obj``'s docstring, dedented."""
    import textwrap

    doc = inspect.getdoc(obj) or ""
    assert "Example::" in doc, f"{obj.__qualname__} has no example"
    block = doc.split("Example::", 1)[1].split("\n\n", 2)[1]
    return textwrap.dedent(block)


def _examples():
    from torchlean import bridge, floats

    return [tl.trace, tl.verify.bounds, tl.verify.robustness, tl.Trainer, floats.bound_certificate,
            floats.float_sound_bounds, bridge.load_onnx, bridge.save_graph, bridge.from_torch,
            bridge.to_torch]


@pytest.mark.parametrize("obj", _examples(), ids=lambda o: o.__qualname__)
def test_docstring_examples_run(obj, tmp_path, monkeypatch):
    """The examples a user copies from help() run as written (in the repository's root, where
    their paths point; a file they write lands in a temporary folder)."""
    from pathlib import Path

    import numpy as np

    from torchlean.bridge import from_torch, load_graph, load_onnx, save_graph, to_torch
    from torchlean.certificates import check
    from torchlean.floats import bound_certificate, epsilons, float_sound_bounds

    code = _example(obj)
    if "torch." in code:
        pytest.importorskip("torch")
    root = Path(__file__).resolve().parents[1]
    code = code.replace('"tests/', f'"{root}/tests/')
    monkeypatch.chdir(tmp_path)
    ns = {"tl": tl, "np": np, "check": check, "epsilons": epsilons, "bound_certificate": bound_certificate,
          "float_sound_bounds": float_sound_bounds, "load_onnx": load_onnx, "save_graph": save_graph,
          "load_graph": load_graph, "from_torch": from_torch, "to_torch": to_torch}
    if "torch." in code:
        import torch

        ns["torch"] = torch
    exec(compile(code, f"{obj.__qualname__} example", "exec"), ns)  # noqa: S102 - our own docstrings
