"""Wire formats shared by the agent, the registry and the auditor.

Minute records and usage reports live here, below all three, so that none imports another.
"""
