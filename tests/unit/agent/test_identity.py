"""Per-device identities: one key per UUID, created atomically with mode 0600, reused after."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from brakepedal.agent import identity as identity_module
from brakepedal.agent.identity import (
    device_id_for_uuid,
    key_path,
    load_or_create_identities,
)
from brakepedal.agent.telemetry import DeviceInfo
from brakepedal.crypto.keys import (
    CryptoSigner,
    generate_ed25519,
    key_fingerprint,
    private_key_to_pem,
)
from brakepedal.errors import InputError, StorageError, TrustError
from brakepedal.model.types import DeviceId

H100 = "NVIDIA H100 80GB HBM3"
DEVICES = [
    DeviceInfo(0, "GPU-3F2A9C10-0000-4000-8000-000000000000", H100),
    DeviceInfo(1, "GPU-3f2a9c10-0000-4000-8000-000000000001", H100),
]


def test_first_start_creates_one_private_key_per_device(tmp_path: Path) -> None:
    identities = load_or_create_identities(tmp_path, DEVICES)
    assert [i.device for i in identities] == [
        DeviceId("gpu-3f2a9c10-0000-4000-8000-000000000000"),
        DeviceId("gpu-3f2a9c10-0000-4000-8000-000000000001"),
    ]
    assert [i.index for i in identities] == [0, 1]
    assert {i.accelerator for i in identities} == {"nvidia-h100-sxm5-80gb"}
    assert [i.uuid for i in identities] == [d.uuid for d in DEVICES]
    assert len({key_fingerprint(i.key) for i in identities}) == 2
    for identity in identities:
        assert identity.key.keyid == identity.signer.public_key.keyid
        path = key_path(tmp_path, identity.uuid)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == sorted(
        key_path(tmp_path, d.uuid).name for d in DEVICES
    )  # no temporary file left behind


def test_later_starts_reuse_the_keys(tmp_path: Path) -> None:
    first = load_or_create_identities(tmp_path, DEVICES)
    again = load_or_create_identities(tmp_path, list(reversed(DEVICES)))
    by_device = {i.device: key_fingerprint(i.key) for i in first}
    assert {i.device: key_fingerprint(i.key) for i in again} == by_device
    assert [i.index for i in again] == [1, 0]


def test_uuid_case_names_one_device() -> None:
    assert device_id_for_uuid("GPU-ABC") == device_id_for_uuid("gpu-abc") == DeviceId("gpu-abc")


@pytest.mark.parametrize(
    ("devices", "reason"),
    [
        ([DeviceInfo(0, "GPU 1", H100)], "identity.uuid_invalid"),
        ([DeviceInfo(0, "", H100)], "identity.uuid_invalid"),
        ([DeviceInfo(0, "-gpu", H100)], "identity.uuid_invalid"),
        ([DeviceInfo(0, "GPU-1", H100), DeviceInfo(1, "gpu-1", H100)], "identity.uuid_duplicate"),
        ([DeviceInfo(0, "GPU-1", "Acme Quantum Brick")], "catalogue.accelerator_unknown"),
    ],
)
def test_unusable_devices_are_refused_by_name(
    tmp_path: Path, devices: list[DeviceInfo], reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_or_create_identities(tmp_path, devices)
    assert caught.value.reason == reason


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_identities(tmp_path, DEVICES)
    key_path(tmp_path, DEVICES[1].uuid).chmod(0o644)
    with pytest.raises(TrustError) as caught:
        load_or_create_identities(tmp_path, DEVICES)
    assert caught.value.reason == "identity.key_permissions"
    assert "chmod 600" in caught.value.remediation


def test_a_key_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    path = key_path(tmp_path, DEVICES[0].uuid)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(InputError) as caught:
        load_or_create_identities(tmp_path, DEVICES[:1])
    assert caught.value.reason == "identity.key_invalid"
    assert "key.pem_invalid" in caught.value.message


def test_a_key_published_meanwhile_by_another_process_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents starting at once: the second to publish adopts the first one's key."""
    theirs = generate_ed25519()
    path = key_path(tmp_path, DEVICES[0].uuid)

    def generate_while_another_publishes() -> CryptoSigner:
        path.write_bytes(private_key_to_pem(theirs))
        path.chmod(0o600)
        return generate_ed25519()

    monkeypatch.setattr(identity_module, "generate_ed25519", generate_while_another_publishes)
    (identity,) = load_or_create_identities(tmp_path, DEVICES[:1])
    assert key_fingerprint(identity.key) == key_fingerprint(theirs.public_key)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_key_files_that_are_not_plain_files_are_refused(tmp_path: Path) -> None:
    path = key_path(tmp_path, DEVICES[0].uuid)
    path.parent.mkdir(mode=0o700)
    path.mkdir()
    with pytest.raises(StorageError, match=r"identity\.key_unreadable"):
        load_or_create_identities(tmp_path, DEVICES[:1])
    path.rmdir()
    target = tmp_path / "elsewhere.pem"
    target.write_bytes(private_key_to_pem(generate_ed25519()))
    target.chmod(0o600)
    path.symlink_to(target)  # a link could point the agent at a key someone else holds
    with pytest.raises(StorageError, match=r"identity\.key_unreadable"):
        load_or_create_identities(tmp_path, DEVICES[:1])


def test_keys_that_cannot_be_written_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match=r"identity\.key_write_failed"):
        load_or_create_identities(tmp_path / "file", DEVICES)

    def no_links(source: Path, target: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", no_links)
    with pytest.raises(StorageError, match=r"identity\.key_write_failed"):
        load_or_create_identities(tmp_path / "state", DEVICES)
    assert list((tmp_path / "state" / "keys").iterdir()) == []  # no temporary file left
