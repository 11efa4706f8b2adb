"""Fuzz target: endorsement chains (concatenated PEM certificates, leaf first).

The input's last certificate is the trusted root and the others the chain, so mutated seeds
reach every verification step; the whole input is also tried as NVIDIA's device identity
chain under NVIDIA's real root. Seeds: NVIDIA's H100 chain and a simulated manufacturer's
chain for ``DEVICE_KEY``, with its root appended.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from brakepedal.crypto.keys import ed25519_public_key
from brakepedal.errors import BrakepedalError
from brakepedal.wire.endorsement import (
    split_pem_certificates,
    verify_endorsement,
    verify_nvidia_chain,
)

#: The device the simulated seed certifies; a fixed key so that the seed stays valid.
DEVICE_KEY = ed25519_public_key(
    Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key().public_bytes_raw()
)
AT = datetime(2030, 1, 1, tzinfo=UTC)
NVIDIA_ROOT = (
    Path(__file__).resolve().parents[1] / "tests/vectors/nvtrust/verifier_device_root.pem"
).read_bytes()


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        verify_nvidia_chain(data, [NVIDIA_ROOT], at=AT)
    with contextlib.suppress(BrakepedalError):
        *chain, root = split_pem_certificates(data)
        verify_endorsement(chain, DEVICE_KEY, [root], at=AT)


if __name__ == "__main__":
    from fuzz.harness import main

    main("enrolment", test_one_input)
