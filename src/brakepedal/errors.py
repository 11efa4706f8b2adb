"""One error taxonomy for the whole package.

Every failure that crosses a module boundary is a :class:`BrakepedalError`, split three ways:

* :class:`InputError`: the bytes or values handed in are malformed, out of bounds or of the
  wrong kind. Nothing was verified; the caller sent something that cannot be read.
* :class:`TrustError`: the input was well formed but does not verify: a bad signature, a proof
  that does not lead to the root, two histories, a quorum not met. This is the security verdict.
* :class:`InfrastructureError`: storage or transport failed. The input may be fine; try again.

Each error carries a stable ``reason`` (a dotted name such as ``"note.signature_invalid"``)
that tests, logs and stored evidence use, and a human message. ``diagnostics()`` adds the
remediation text that the CLI prints.
"""

from __future__ import annotations

__all__ = [
    "BrakepedalError",
    "InfrastructureError",
    "InputError",
    "StorageError",
    "TransportError",
    "TrustError",
    "located",
]


class BrakepedalError(Exception):
    """Base of every error this package raises on purpose."""

    #: What a human can do about this kind of error; subclasses override.
    remediation: str = "This is a bug in brakepedal if you cannot explain it; please report it."

    def __init__(self, reason: str, message: str, *, remediation: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        if remediation is not None:
            self.remediation = remediation

    def __str__(self) -> str:
        return f"{self.message} [{self.reason}]"

    def diagnostics(self) -> str:
        """The message, its stable reason and what to do about it, for people."""
        return f"{self.message}\n  reason: {self.reason}\n  what to do: {self.remediation}"


class InputError(BrakepedalError):
    """Input that cannot be parsed or is outside the configured bounds."""

    remediation = "Check the input named in the message; it was not accepted and nothing changed."


class TrustError(BrakepedalError):
    """Well-formed input that fails verification: treat its source as untrusted."""

    remediation = (
        "Do not rely on this input. Keep it as evidence and compare it with an independent "
        "copy (another witness, the auditor, the signer)."
    )


class InfrastructureError(BrakepedalError):
    """Storage or transport failed; the operation may succeed when retried."""

    remediation = "Check that the database or service is reachable and retry."


class StorageError(InfrastructureError):
    """The backing store failed or holds data that contradicts itself."""


class TransportError(InfrastructureError):
    """A network peer could not be reached or answered out of protocol."""


def located(error: InputError, where: str) -> InputError:
    """``error`` with ``where`` (a field's path) in front of its message, unless the message
    already starts with it: parsers of nested documents prefix each level once."""
    if error.message.startswith(where):
        return error
    return InputError(error.reason, f"{where}: {error.message}")
