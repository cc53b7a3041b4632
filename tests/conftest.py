"""The pytest plugin (``--torchlean-check``) comes through torchlean's ``pytest11`` entry point
once torchlean is installed from this pyproject.toml; an older installed copy without the entry
point (or a source tree on PYTHONPATH only) gets it from here, never both (pluggy would refuse a
second registration)."""

from importlib.metadata import entry_points

from threadpoolctl import threadpool_limits

# One BLAS thread for the whole run. The tests' matrices are small (ACAS Xu's are 50 wide), where
# OpenBLAS's threads buy nothing, and on a loaded 2-core runner they made the search 5x slower
# (1_1 prop_6: 12 s with one thread, past its 60 s deadline with the default, at load 14; session
# 33). numpy is already loaded when this file runs (the pytest11 plugin imports torchlean), so the
# OPENBLAS_NUM_THREADS variable would come too late: threadpoolctl sets the loaded library.
threadpool_limits(1, user_api="blas")

_PLUGIN = "torchlean.proofs.pytest_plugin"
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) else [_PLUGIN]
