"""reconciler: GitOps for customer-managed KMS keys and the secrets they protect."""

__version__ = "0.1.0"
