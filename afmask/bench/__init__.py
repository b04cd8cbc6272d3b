"""Benchmarks that print figures (ratios against a baseline run in the same process); ``kernel`` times the mask step."""
