"""Reproducible experiments (scripts behind the numbers in docs/)."""
