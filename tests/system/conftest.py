"""System tests use the registry fixtures (a registry on SQLite and PostgreSQL, a server)."""

from tests.unit.registry.conftest import registry, registry_url, server

__all__ = ["registry", "registry_url", "server"]
