pytest_plugins = ["torchlean.proofs.pytest_plugin"]  # pytest --torchlean-check
