"""Helpers shared by the tests: small inputs, models and runs, and running entry points."""
