"""Where a vault's envelopes live: local directory, S3, Secrets Manager, SSM."""
