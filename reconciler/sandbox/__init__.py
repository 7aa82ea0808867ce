"""The local AWS: moto's server plus a fidelity layer that makes it behave
as AWS does where reconciler's features depend on it. Needs the [sandbox]
extra; nothing outside this package imports moto."""
