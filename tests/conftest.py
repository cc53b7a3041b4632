"""The pytest plugin (``--torchlean-check``) comes through torchlean's ``pytest11`` entry point
once torchlean is installed from this pyproject.toml; an older installed copy without the entry
point (or a source tree on PYTHONPATH only) gets it from here, never both (pluggy would refuse a
second registration)."""

from importlib.metadata import entry_points

_PLUGIN = "torchlean.proofs.pytest_plugin"
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) else [_PLUGIN]
