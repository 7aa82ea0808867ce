"""Golden plans: one folder per case, run by tests/unit/test_golden.py (no AWS)."""
