"""Envelope encryption: the envelope format (pure) and the KMS keyring."""
