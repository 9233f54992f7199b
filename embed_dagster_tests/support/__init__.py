"""Helpers shared by the test files: the code location's objects, built once."""
