"""Transparency log: RFC 9162 Merkle hashing and proofs, C2SP checkpoints, notes and tiles."""
