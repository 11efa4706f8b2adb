"""Simulated worlds that drive the real agent, registry and auditor code."""
