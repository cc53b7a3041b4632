"""Ready models, datasets and the runnable examples behind ``python -m torchlean <example>``."""
