"""The registry: verifies, stores and logs usage reports, and serves proofs."""
