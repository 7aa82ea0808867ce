"""State: the model (pure), the file format and the backends with locks."""
