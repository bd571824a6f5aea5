"""Measured runs comparing the platform with a named baseline; each writes benchmarks/results/<name>.json."""
