"""Manifests: YAML loading with positions, schema validation, the model."""
