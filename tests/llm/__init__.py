"""LLM-path tests (a package, so test module names cannot clash with tests/test_*.py)."""
