"""Test doubles shared by the test suite (kept out of the vadedge wheel)."""
