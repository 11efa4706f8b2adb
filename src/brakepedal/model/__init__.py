"""Data types and their validation. No I/O."""
