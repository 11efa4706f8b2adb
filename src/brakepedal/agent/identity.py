"""Per-device identity: one Ed25519 signing key per accelerator, kept on the node.

Every accelerator the telemetry backend lists gets a :class:`DeviceIdentity`: its stable
:class:`~brakepedal.model.types.DeviceId`, the catalogue id of its model and the key that signs
its usage reports. This is the software key of DESIGN.md's trust levels (the weakest one: a
key bound to the hardware by an endorsement chain, CC attestation or a TPM replaces it there).

* **Device id.** The hardware UUID NVML reports (``GPU-8f1c...``, ``MIG-...``), lowercased:
  UUIDs are hexadecimal, so case carries no meaning, and the result is a valid identifier that
  an operator recognises in ``nvidia-smi -L``. A UUID that does not make a valid identifier is
  refused (``identity.uuid_invalid``) rather than rewritten, so two devices can never collapse
  into one id; two devices with one UUID are refused too (``identity.uuid_duplicate``).
* **Key files.** ``<state_dir>/keys/<sha256(uuid)>.pem``: unencrypted PKCS#8 PEM, mode 0600, in
  a directory of mode 0700. The file name is a digest of the UUID, not the UUID or device id,
  since identifiers are names, not paths (:mod:`brakepedal.model.types`). On first start the
  key is written to a temporary file in the same directory, fsynced, and linked into place with
  ``os.link``, which (unlike a rename) never replaces a key another process created meanwhile;
  the directory is then fsynced. A crash at any point leaves either no key file or a complete
  one, never a truncated key. After that the key is reused: a device's chain must be signed by
  one key from its first report on.
* A key file readable or writable by group or others is refused (``identity.key_permissions``),
  as ssh does: someone else may hold a copy of the key.

Reasons: ``identity.uuid_invalid``, ``identity.uuid_duplicate``, ``identity.key_invalid`` (the
file is not an Ed25519 PEM private key; the ``key.*`` reason is in the message),
``identity.key_permissions``, ``identity.key_unreadable`` and ``identity.key_write_failed``
(:class:`StorageError`), and the catalogue's ``catalogue.accelerator_unknown`` for a model the
catalogue does not know.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.agent.telemetry import DeviceInfo
from brakepedal.crypto.keys import (
    CryptoSigner,
    Key,
    Signer,
    generate_ed25519,
    private_key_to_pem,
    signer_from_pem,
)
from brakepedal.errors import InputError, StorageError, TrustError
from brakepedal.model.types import DeviceId

__all__ = ["DeviceIdentity", "device_id_for_uuid", "key_path", "load_or_create_identities"]

_KEY_DIR_MODE = 0o700
_KEY_FILE_MODE = 0o600
#: A PEM Ed25519 private key is ~120 bytes; anything far larger is not one.
_MAX_KEY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """One accelerator as the agent signs for it: backend index, ids, key."""

    index: int
    device: DeviceId
    accelerator: str
    uuid: str
    signer: Signer
    key: Key


def device_id_for_uuid(uuid: str) -> DeviceId:
    """The stable device id of a hardware UUID: the UUID lowercased (``identity.uuid_invalid``)."""
    try:
        return DeviceId(uuid.strip().lower())
    except (InputError, AttributeError) as e:
        detail = e.message if isinstance(e, InputError) else "not a string"
        raise InputError(
            "identity.uuid_invalid", f"device UUID {uuid!r:.80} is not usable: {detail}"
        ) from e


def key_path(state_dir: Path, uuid: str) -> Path:
    """Where the key of the device with ``uuid`` lives."""
    name = hashlib.sha256(uuid.strip().lower().encode()).hexdigest()
    return state_dir / "keys" / f"{name}.pem"


def load_or_create_identities(
    state_dir: Path, backend_devices: Sequence[DeviceInfo], catalogue: Catalogue | None = None
) -> list[DeviceIdentity]:
    """One identity per device, in the order given; keys are created on first start."""
    keys_dir = state_dir / "keys"
    _ensure_directory(keys_dir)
    identities: list[DeviceIdentity] = []
    seen: set[DeviceId] = set()
    for info in backend_devices:
        device = device_id_for_uuid(info.uuid)
        if device in seen:
            raise InputError("identity.uuid_duplicate", f"two devices have UUID {info.uuid!r}")
        seen.add(device)
        accelerator = info.accelerator(catalogue).id
        signer = _load_or_create_key(key_path(state_dir, info.uuid))
        identities.append(
            DeviceIdentity(info.index, device, accelerator, info.uuid, signer, signer.public_key)
        )
    return identities


def _ensure_directory(path: Path) -> None:
    try:
        path.mkdir(mode=_KEY_DIR_MODE, parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError("identity.key_write_failed", f"cannot create {path}: {e}") from e


def _load_or_create_key(path: Path) -> CryptoSigner:
    existing = _read_key(path)
    if existing is not None:
        return existing
    signer = generate_ed25519()
    if _publish(path, private_key_to_pem(signer)):
        return signer
    # Another process published a key first: that one is the device's key.
    raced = _read_key(path)
    if raced is None:  # pragma: no cover - the link just reported the file exists
        raise StorageError("identity.key_unreadable", f"{path} vanished after it was created")
    return raced


def _read_key(path: Path) -> CryptoSigner | None:
    """The signer in ``path``, or None when there is no key file yet."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError("identity.key_unreadable", f"cannot open {path}: {e}") from e
    try:
        _check_key_file(path, os.fstat(descriptor).st_mode)
        with os.fdopen(descriptor, "rb") as file:
            descriptor = -1  # the file object owns it now
            data = file.read(_MAX_KEY_FILE_BYTES + 1)
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    try:
        return signer_from_pem(data)
    except InputError as e:
        raise InputError("identity.key_invalid", f"{path}: {e.message} [{e.reason}]") from e


def _check_key_file(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise StorageError("identity.key_unreadable", f"{path} is not a regular file")
    if mode & 0o077:
        raise TrustError(
            "identity.key_permissions",
            f"{path} has mode {stat.S_IMODE(mode):04o}; group or others can reach the key",
            remediation=f"Run chmod 600 {path} if nobody else can have copied the key; "
            "otherwise retire the device's key and enrol a new one.",
        )


def _publish(path: Path, pem: bytes) -> bool:
    """Write ``pem`` to ``path`` atomically, never replacing a file; False if one exists."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _KEY_FILE_MODE
        )
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        _fsync_directory(path.parent)
    except OSError as e:
        raise StorageError("identity.key_write_failed", f"cannot write {path}: {e}") from e
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
