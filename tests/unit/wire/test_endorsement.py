"""Endorsement chains: a simulated manufacturer, named bad chains, NVIDIA's real H100 chain."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.crypto.keys import Key, SSlibKey, generate_ed25519
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.wire.endorsement import (
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN_CERTIFICATES,
    TRUST_LEVELS,
    Endorsement,
    Manufacturer,
    split_pem_certificates,
    verify_endorsement,
    verify_nvidia_chain,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
YEAR = timedelta(days=365)
SERIAL = "SN-000123"
ACCELERATOR = "nvidia-h100-sxm5"

MAKER = Manufacturer.generate("Acme Accelerators", now=NOW - DAY)
DEVICE = generate_ed25519()
DEVICE_KEY: Key = DEVICE.public_key
CHAIN = MAKER.endorse(DEVICE_KEY, serial=SERIAL, accelerator=ACCELERATOR, now=NOW - DAY)
ROOTS = [MAKER.root_pem]

VECTORS = Path(__file__).parents[2] / "vectors/nvtrust"
NVIDIA_CHAIN = (VECTORS / "hopperCertChain.txt").read_bytes()
NVIDIA_ROOT = (VECTORS / "verifier_device_root.pem").read_bytes()
NVIDIA_RIM_ROOT = (VECTORS / "verifier_RIM_root.pem").read_bytes()
# The real chain's certificates (see their notBefore/notAfter) are all valid from 2022-03-01,
# the notBefore of "NVIDIA GH100 Provisioner ICA 1" (certificate 2), to 9999-12-31T23:59:59Z.
NVIDIA_VALID_FROM = datetime(2022, 3, 1, tzinfo=UTC)
NVIDIA_AT = datetime(2025, 1, 1, tzinfo=UTC)
NVIDIA_LEAF_SERIAL = "53C22BA15E5D68088282DA074ED9FB37AA585771"


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def der_to_pem(der: bytes) -> bytes:
    """PEM armour around any bytes, parseable or not."""
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


def pem_to_der(data: bytes) -> bytes:
    return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


# --- hand-built certificates, for the structures Manufacturer never makes -----------------


def usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"],
        False,
    )  # fmt: skip
    return x509.KeyUsage(**(flags | on))


@dataclass(frozen=True)
class Profile:
    """What goes into one hand-built certificate besides names and keys."""

    basic: x509.BasicConstraints | None
    usage: x509.KeyUsage | None
    valid: tuple[datetime, datetime] = (NOW - DAY, NOW + YEAR)
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = ()


CA = Profile(x509.BasicConstraints(ca=True, path_length=None), usage(key_cert_sign=True))
LEAF = Profile(x509.BasicConstraints(ca=False, path_length=None), usage(digital_signature=True))
DEVICE_SUBJECT = {"O": "Hand Made", "OU": ACCELERATOR, "serialNumber": SERIAL}
_OIDS = {
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "CN": NameOID.COMMON_NAME,
}
IssuerKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def name(*attributes: tuple[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[label], value) for label, value in attributes])


def certificate(
    subject: x509.Name,
    public_key: Ed25519PublicKey | ec.EllipticCurvePublicKey,
    issuer: tuple[x509.Name, IssuerKey],
    profile: Profile,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0])
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(profile.valid[0])
        .not_valid_after(profile.valid[1])
    )
    if profile.basic is not None:
        builder = builder.add_extension(profile.basic, critical=True)
    if profile.usage is not None:
        builder = builder.add_extension(profile.usage, critical=True)
    for extension, critical in profile.extra:
        builder = builder.add_extension(extension, critical=critical)
    key = issuer[1]
    return builder.sign(key, None if isinstance(key, Ed25519PrivateKey) else hashes.SHA256())


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: IssuerKey

    @property
    def as_issuer(self) -> tuple[x509.Name, IssuerKey]:
        return self.cert.subject, self.key


def authority(
    cn: str, profile: Profile = CA, by: Authority | None = None, subject: x509.Name | None = None
) -> Authority:
    key = Ed25519PrivateKey.generate()
    subject = subject or name(("O", "Hand Made"), ("CN", cn))
    issuer = (subject, key) if by is None else by.as_issuer
    return Authority(certificate(subject, key.public_key(), issuer, profile), key)


DEVICE_PUBLIC = Ed25519PublicKey.from_public_bytes(bytes.fromhex(DEVICE_KEY.keyval["public"]))


@dataclass(frozen=True)
class Case:
    chain: Sequence[bytes]
    roots: Sequence[bytes] = tuple(ROOTS)
    key: Key = DEVICE_KEY
    at: datetime = NOW


def hand(
    *,
    root: Profile = CA,
    inter: Profile = CA,
    leaf: Profile = LEAF,
    subject: Sequence[tuple[str, str]] = tuple(DEVICE_SUBJECT.items()),
    leaf_key: Ed25519PublicKey | ec.EllipticCurvePublicKey = DEVICE_PUBLIC,
    root_subject: x509.Name | None = None,
) -> Case:
    """Root, intermediate, leaf, built by hand with the given profiles."""
    top = authority("Hand Root", root, subject=root_subject)
    middle = authority("Hand Device CA", inter, by=top)
    device = certificate(name(*subject), leaf_key, middle.as_issuer, leaf)
    return Case([pem(device), pem(middle.cert)], roots=[pem(top.cert)])


def negative_serial(data: bytes) -> bytes:
    """``data`` with its serial number made negative (re-armoured; the signature breaks)."""
    der = bytearray(pem_to_der(data))
    start = der.index(bytes.fromhex("a003020102")) + 5  # after the v3 version field
    assert der[start] == 0x02  # INTEGER serialNumber
    der[start + 2] |= 0x80
    return der_to_pem(bytes(der))


# --- the happy paths -------------------------------------------------------------------------


def test_a_generated_manufacturer_endorses_a_device() -> None:
    endorsement = verify_endorsement(CHAIN, DEVICE_KEY, ROOTS, at=NOW)
    assert endorsement == Endorsement(
        manufacturer="Acme Accelerators",
        serial=SERIAL,
        accelerator=ACCELERATOR,
        root_fingerprint=hashlib.sha256(pem_to_der(MAKER.root_pem)).hexdigest(),
        trust_level="manufacturer",
    )
    assert TRUST_LEVELS.index("manufacturer") > TRUST_LEVELS.index("software")


def test_the_device_certificate_holds_the_device_key_and_names() -> None:
    leaf = x509.load_pem_x509_certificate(CHAIN[0])
    assert leaf.public_key() == DEVICE_PUBLIC
    assert CHAIN[1] == MAKER.intermediate_pem
    assert leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SERIAL
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        ACCELERATOR
    )
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_chain_may_end_with_a_copy_of_its_root() -> None:
    assert verify_endorsement([*CHAIN, MAKER.root_pem], DEVICE_KEY, ROOTS, at=NOW).serial == SERIAL


def test_the_root_that_signed_is_found_among_namesakes() -> None:
    roots = [MAKER_NAMESAKE.root_pem, MAKER.root_pem]
    endorsement = verify_endorsement(CHAIN, DEVICE_KEY, roots, at=NOW)
    assert endorsement.root_fingerprint == hashlib.sha256(pem_to_der(MAKER.root_pem)).hexdigest()


def test_a_hand_built_chain_verifies() -> None:
    case = hand()
    assert verify_endorsement(case.chain, case.key, case.roots, at=case.at).manufacturer == (
        "Hand Made"
    )


def test_the_manufacturer_is_the_root_cn_when_it_has_no_o() -> None:
    case = hand(root_subject=name(("CN", "Only A Common Name")))
    endorsement = verify_endorsement(case.chain, case.key, case.roots, at=case.at)
    assert endorsement.manufacturer == "Only A Common Name"


def test_a_chain_is_valid_at_its_bounds_only() -> None:
    chain = MAKER.endorse(DEVICE_KEY, serial=SERIAL, accelerator=ACCELERATOR, now=NOW, days=10)
    verify_endorsement(chain, DEVICE_KEY, ROOTS, at=NOW)
    verify_endorsement(chain, DEVICE_KEY, ROOTS, at=NOW + 10 * DAY)
    with pytest.raises(TrustError, match=r"enrolment\.expired"):
        verify_endorsement(chain, DEVICE_KEY, ROOTS, at=NOW + 10 * DAY + timedelta(seconds=1))


# --- a table of named bad chains -------------------------------------------------------------


def _other_ca_leaf(manufacturer: str) -> list[bytes]:
    forger = Manufacturer.generate(manufacturer, now=NOW - DAY)
    forged = forger.endorse(DEVICE_KEY, serial=SERIAL, accelerator=ACCELERATOR, now=NOW - DAY)
    return [forged[0], MAKER.intermediate_pem]


def _endorse(
    *, other_key: bool = False, now: datetime = NOW - DAY, days: int = 3650
) -> list[bytes]:
    device = generate_ed25519().public_key if other_key else DEVICE_KEY
    return MAKER.endorse(device, serial=SERIAL, accelerator=ACCELERATOR, now=now, days=days)


_PRIVATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
CRITICAL_UNKNOWN = (x509.UnrecognizedExtension(_PRIVATE_OID, b"\x05\x00"), True)
NOT_CA = x509.BasicConstraints(ca=False, path_length=None)
OTHER_MAKER = Manufacturer.generate("Other Accelerators", now=NOW - DAY)
OTHER_MAKER_BUNDLE = OTHER_MAKER.to_pem()
MAKER_NAMESAKE = Manufacturer.generate("Acme Accelerators", now=NOW - DAY)
EC_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
K1_KEY = ec.generate_private_key(ec.SECP256K1()).public_key()
GARBAGE_PEM = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"

BAD_CHAINS = [
    # (id, build, error class, reason, a fragment the message must hold)
    ("forged_leaf_same_names", lambda: Case(_other_ca_leaf("Acme Accelerators")),
     TrustError, "signature_invalid", "certificate 0 (leaf)"),
    ("forged_intermediate_same_names",
     lambda: Case(MAKER_NAMESAKE.endorse(DEVICE_KEY, serial=SERIAL, accelerator="x", now=NOW)),
     TrustError, "signature_invalid", "certificate 1"),
    ("forged_leaf_other_ca", lambda: Case(_other_ca_leaf("Forgery Inc")),
     TrustError, "issuer_mismatch", "certificate 0 (leaf)"),
    ("wrong_device_key", lambda: Case(_endorse(other_key=True)),
     TrustError, "key_mismatch", "not the device key"),
    ("ecdsa_leaf_key", lambda: hand(leaf_key=EC_KEY),
     TrustError, "key_mismatch", "not the device's Ed25519 key"),
    ("expired_leaf", lambda: Case(_endorse(days=30), at=NOW + 60 * DAY),
     TrustError, "expired", "certificate 0 (leaf)"),
    ("not_yet_valid_leaf", lambda: Case(_endorse(now=NOW + 10 * DAY), at=NOW + DAY),
     TrustError, "not_yet_valid", "certificate 0 (leaf)"),
    ("not_yet_valid_intermediate", lambda: hand(inter=replace(CA, valid=(NOW + DAY, NOW + YEAR))),
     TrustError, "not_yet_valid", "certificate 1"),
    ("expired_root", lambda: hand(root=replace(CA, valid=(NOW - YEAR, NOW - DAY))),
     TrustError, "expired", "trusted root 0"),
    ("intermediate_not_ca", lambda: hand(inter=replace(CA, basic=NOT_CA)),
     TrustError, "not_a_ca", "certificate 1"),
    ("intermediate_without_basic_constraints", lambda: hand(inter=replace(CA, basic=None)),
     TrustError, "not_a_ca", "certificate 1"),
    ("intermediate_without_key_cert_sign",
     lambda: hand(inter=replace(CA, usage=usage(digital_signature=True))),
     TrustError, "not_a_ca", "keyCertSign"),
    ("intermediate_without_key_usage", lambda: hand(inter=replace(CA, usage=None)),
     TrustError, "not_a_ca", "certificate 1"),
    ("root_not_ca", lambda: hand(root=replace(CA, basic=NOT_CA)),
     TrustError, "not_a_ca", "trusted root 0"),
    ("root_path_length_zero", lambda: hand(root=replace(CA, basic=x509.BasicConstraints(True, 0))),
     TrustError, "path_length_exceeded", "trusted root 0"),
    ("leaf_marked_ca", lambda: hand(leaf=replace(LEAF, basic=x509.BasicConstraints(True, None))),
     TrustError, "leaf_is_ca", "certificate 0 (leaf)"),
    ("leaf_may_not_sign", lambda: hand(leaf=replace(LEAF, usage=usage(key_agreement=True))),
     TrustError, "key_usage_invalid", "certificate 0 (leaf)"),
    ("unknown_critical_extension", lambda: hand(leaf=replace(LEAF, extra=(CRITICAL_UNKNOWN,))),
     TrustError, "extension_unsupported", "1.3.6.1.4.1.55555.1"),
    ("untrusted_root", lambda: Case(CHAIN, roots=[OTHER_MAKER.root_pem]),
     TrustError, "root_untrusted", "certificate 1"),
    ("dropped_intermediate", lambda: Case(CHAIN[:1]),
     TrustError, "root_untrusted", "certificate 0 (leaf)"),
    ("reversed", lambda: Case(CHAIN[::-1]),
     TrustError, "issuer_mismatch", "certificate 0 (leaf)"),
    ("only_the_root", lambda: Case([MAKER.root_pem]),
     TrustError, "chain_empty", "only a trusted root"),
    ("root_without_names", lambda: hand(root_subject=name(("serialNumber", "1"))),
     TrustError, "fields_missing", "O or CN"),
    ("not_bytes", lambda: Case([CHAIN[0].decode(), CHAIN[1]]),  # type: ignore[list-item]
     InputError, "certificate_invalid", "certificate 0 (leaf)"),
    ("empty_chain", lambda: Case([]),
     TrustError, "chain_empty", "no certificate"),
    ("no_trusted_roots", lambda: Case(CHAIN, roots=[]),
     InputError, "roots_empty", "no trusted root"),
    ("garbage_pem", lambda: Case([b"not a certificate", CHAIN[1]]),
     InputError, "certificate_invalid", "certificate 0 (leaf)"),
    ("pem_of_garbage", lambda: Case([GARBAGE_PEM, CHAIN[1]]),
     InputError, "certificate_invalid", "certificate 0 (leaf)"),
    ("text_after_pem", lambda: Case([CHAIN[0] + b"trailing", CHAIN[1]]),
     InputError, "certificate_invalid", "certificate 0 (leaf)"),
    ("two_pems_in_one", lambda: Case([CHAIN[0] + CHAIN[1]]),
     InputError, "certificate_invalid", "one PEM certificate"),
    ("garbage_root", lambda: Case(CHAIN, roots=[b"junk"]),
     InputError, "certificate_invalid", "trusted root 0"),
    ("negative_serial_number", lambda: Case([negative_serial(CHAIN[0]), CHAIN[1]]),
     InputError, "certificate_invalid", "certificate 0 (leaf)"),
    ("chain_too_long", lambda: Case(CHAIN * 3),
     InputError, "chain_too_long", "6 certificates"),
    ("certificate_too_large", lambda: Case([CHAIN[0] + b" " * MAX_CERTIFICATE_BYTES]),
     InputError, "too_large", "certificate 0 (leaf)"),
    ("unsupported_curve", lambda: hand(leaf_key=K1_KEY),
     InputError, "algorithm_unsupported", "certificate 0 (leaf)"),
    ("missing_serial", lambda: hand(subject=[("O", "Hand Made"), ("OU", ACCELERATOR)]),
     TrustError, "fields_missing", "serialNumber"),
    ("missing_accelerator", lambda: hand(subject=[("serialNumber", SERIAL), ("CN", SERIAL)]),
     TrustError, "fields_missing", "OU"),
    ("two_serials", lambda: hand(subject=[("serialNumber", SERIAL), ("serialNumber", "SN-2"),
                                          ("OU", ACCELERATOR)]),
     TrustError, "fields_invalid", "serialNumber"),
    ("accelerator_not_a_catalogue_id", lambda: hand(subject=[("serialNumber", SERIAL),
                                                             ("OU", "NVIDIA H100")]),
     TrustError, "fields_invalid", "OU"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "kind", "reason", "where"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD_CHAINS],
)
def test_bad_chain_is_refused(
    build: Callable[[], Case], kind: type[BrakepedalError], reason: str, where: str
) -> None:
    case = build()
    with pytest.raises(kind) as caught:
        verify_endorsement(case.chain, case.key, case.roots, at=case.at)
    assert caught.value.reason == f"enrolment.{reason}"
    assert where in caught.value.message


def test_bad_chain_table_names_are_unique() -> None:
    assert len({row[0] for row in BAD_CHAINS}) == len(BAD_CHAINS)
    assert MAX_CHAIN_CERTIFICATES == 5


def test_a_flipped_signature_byte_is_refused() -> None:
    leaf = der_to_pem(flip(pem_to_der(CHAIN[0]), -1))
    with pytest.raises(TrustError, match=r"enrolment\.signature_invalid"):
        verify_endorsement([leaf, CHAIN[1]], DEVICE_KEY, ROOTS, at=NOW)


def test_a_signature_with_unused_bits_is_refused() -> None:
    """DER lets a BIT STRING end in unused (zero) bits and cryptography verifies the signature's
    bytes regardless, so this re-encoding of the same certificate would verify: a second
    encoding of one certificate, which the verifier refuses."""
    chain = CHAIN
    while pem_to_der(chain[0])[-1] & 1:  # an even last byte: 1 unused bit is valid DER
        chain = _endorse()
    der = pem_to_der(chain[0])
    reencoded = flip(der, -len(x509.load_der_x509_certificate(der).signature) - 1)
    leaf = x509.load_der_x509_certificate(reencoded)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(MAKER.intermediate_pem))
    with pytest.raises(InputError) as caught:
        verify_endorsement([der_to_pem(reencoded), chain[1]], DEVICE_KEY, ROOTS, at=NOW)
    assert caught.value.reason == "enrolment.certificate_invalid"
    assert "unused bits" in caught.value.message


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(InputError, match=r"time\.naive"):
        verify_endorsement(CHAIN, DEVICE_KEY, ROOTS, at=NOW.replace(tzinfo=None))


def test_a_device_key_that_is_not_ed25519_is_refused() -> None:
    rsa_like = SSlibKey("id", "rsa", "rsassa-pss-sha256", {"public": "x"})
    with pytest.raises(InputError, match=r"key\.type_unsupported"):
        verify_endorsement(CHAIN, rsa_like, ROOTS, at=NOW)


_LEAF_DER = pem_to_der(CHAIN[0])


@settings(max_examples=400, deadline=None)
@given(position=st.integers(0, len(_LEAF_DER) - 1), mask=st.integers(1, 255))
def test_any_single_byte_change_in_the_leaf_is_refused(position: int, mask: int) -> None:
    changed = der_to_pem(flip(_LEAF_DER, position, mask))
    with pytest.raises(BrakepedalError):
        verify_endorsement([changed, CHAIN[1]], DEVICE_KEY, ROOTS, at=NOW)


# --- the simulated manufacturer itself --------------------------------------------------------


@pytest.mark.parametrize("password", [None, b"correct horse"])
def test_a_manufacturer_survives_a_round_trip_through_pem(password: bytes | None) -> None:
    bundle = MAKER.to_pem(password=password)
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") == 2
    loaded = Manufacturer.from_pem(bundle, password=password)
    assert (loaded.name, loaded.root_pem, loaded.intermediate_pem) == (
        MAKER.name,
        MAKER.root_pem,
        MAKER.intermediate_pem,
    )
    chain = loaded.endorse(DEVICE_KEY, serial="SN-9", accelerator=ACCELERATOR, now=NOW)
    assert verify_endorsement(chain, DEVICE_KEY, ROOTS, at=NOW).serial == "SN-9"


def _swap_keys(bundle: bytes) -> bytes:
    parts = bundle.split(b"-----BEGIN PRIVATE KEY-----")
    return parts[0] + b"-----BEGIN PRIVATE KEY-----".join([b"", parts[2], parts[1]])


def _pem_blocks(bundle: bytes) -> list[bytes]:
    return [b"-----BEGIN" + block for block in bundle.split(b"-----BEGIN")[1:]]


def _foreign_intermediate(bundle: bytes) -> bytes:
    """``bundle`` with another CA's intermediate certificate and key (a matching pair)."""
    mine, theirs = _pem_blocks(bundle), _pem_blocks(OTHER_MAKER_BUNDLE)
    return b"".join([mine[0], theirs[1], mine[2], theirs[3]])


@pytest.mark.parametrize(
    ("mangle", "password", "reason"),
    [
        pytest.param(lambda b: b + b"\njunk", None, "enrolment.ca_invalid", id="trailing_text"),
        pytest.param(lambda b: MAKER.root_pem, None, "enrolment.ca_invalid", id="only_a_cert"),
        pytest.param(lambda b: b * 100, None, "enrolment.too_large", id="too_large"),
        pytest.param(_swap_keys, None, "enrolment.ca_invalid", id="keys_swapped"),
        pytest.param(_foreign_intermediate, None, "enrolment.ca_invalid", id="foreign_ca"),
        pytest.param(
            lambda b: b.replace(MAKER.intermediate_pem, MAKER.root_pem),
            None,
            "enrolment.ca_invalid",
            id="root_twice",
        ),
        pytest.param(lambda b: b, b"pw", "key.password_unexpected", id="password_unexpected"),
    ],
)
def test_a_broken_ca_bundle_is_refused(
    mangle: Callable[[bytes], bytes], password: bytes | None, reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        Manufacturer.from_pem(mangle(MAKER.to_pem()), password=password)
    assert caught.value.reason == reason


def test_an_encrypted_ca_bundle_needs_the_right_password() -> None:
    bundle = MAKER.to_pem(password=b"right")
    with pytest.raises(InputError, match=r"key\.password_wrong"):
        Manufacturer.from_pem(bundle, password=b"wrong")
    with pytest.raises(InputError, match=r"key\.password_required"):
        Manufacturer.from_pem(bundle)


def test_a_ca_whose_intermediate_is_no_ca_is_refused() -> None:
    root = authority("Root")
    middle = authority("Not a CA", replace(CA, basic=x509.BasicConstraints(False, None)), root)
    assert isinstance(root.key, Ed25519PrivateKey)
    assert isinstance(middle.key, Ed25519PrivateKey)
    with pytest.raises(InputError, match=r"enrolment\.ca_invalid"):
        Manufacturer(root.cert, root.key, middle.cert, middle.key)


@pytest.mark.parametrize(
    ("name", "years", "reason"),
    [
        ("", 10, "enrolment.field_invalid"),
        (" padded", 10, "enrolment.field_invalid"),
        ("x" * 65, 10, "enrolment.field_invalid"),
        ("line\nbreak", 10, "enrolment.field_invalid"),
        ("Acme", 0, "enrolment.validity_invalid"),
        ("Acme", 101, "enrolment.validity_invalid"),
    ],
)
def test_generate_refuses_bad_arguments(name: str, years: int, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        Manufacturer.generate(name, now=NOW, years=years)
    assert caught.value.reason == reason


def test_generate_refuses_a_naive_time() -> None:
    with pytest.raises(InputError, match=r"time\.naive"):
        Manufacturer.generate("Acme", now=datetime(2025, 1, 1))


def test_a_ca_made_on_29_february_ends_on_28_february() -> None:
    maker = Manufacturer.generate("Leap", now=datetime(2024, 2, 29, tzinfo=UTC), years=1)
    root = x509.load_pem_x509_certificate(maker.root_pem)
    assert root.not_valid_after_utc == datetime(2025, 2, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("serial", "accelerator", "days", "now", "reason"),
    [
        ("SN 1", ACCELERATOR, 10, NOW, "enrolment.field_invalid"),
        ("SN_1", ACCELERATOR, 10, NOW, "enrolment.field_invalid"),
        (SERIAL, "NVIDIA H100", 10, NOW, "enrolment.field_invalid"),
        (SERIAL, ACCELERATOR, 0, NOW, "enrolment.validity_invalid"),
        (SERIAL, ACCELERATOR, 10, NOW - 2 * DAY, "enrolment.validity_invalid"),
        (SERIAL, ACCELERATOR, 10, NOW + 20 * YEAR, "enrolment.validity_invalid"),
    ],
)
def test_endorse_refuses_bad_arguments(
    serial: str, accelerator: str, days: int, now: datetime, reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        MAKER.endorse(DEVICE_KEY, serial=serial, accelerator=accelerator, now=now, days=days)
    assert caught.value.reason == reason


def test_a_device_certificate_ends_with_its_ca() -> None:
    late = NOW + 9 * YEAR
    leaf = x509.load_pem_x509_certificate(
        MAKER.endorse(DEVICE_KEY, serial=SERIAL, accelerator=ACCELERATOR, now=late)[0]
    )
    intermediate = x509.load_pem_x509_certificate(MAKER.intermediate_pem)
    assert leaf.not_valid_after_utc == intermediate.not_valid_after_utc


def test_an_endorsement_has_a_known_trust_level() -> None:
    with pytest.raises(InputError, match=r"enrolment\.field_invalid"):
        Endorsement("m", "s", "a", "-", trust_level="root")


# --- NVIDIA's real H100 device identity chain ---------------------------------------------------


def test_the_real_h100_chain_verifies() -> None:
    identity = verify_nvidia_chain(NVIDIA_CHAIN, [NVIDIA_ROOT], at=NVIDIA_AT)
    assert identity.manufacturer == "NVIDIA"
    assert identity.serial == NVIDIA_LEAF_SERIAL
    assert "CN=GH100 A01 GSP FMC LF" in identity.subject
    assert identity.trust_level == "hardware"
    assert identity.root_fingerprint == hashlib.sha256(pem_to_der(NVIDIA_ROOT)).hexdigest()
    leaf_key = x509.load_pem_x509_certificates(NVIDIA_CHAIN)[0].public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    assert isinstance(leaf_key.curve, ec.SECP384R1)
    spki = leaf_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert identity.leaf_public_key == spki


def test_the_real_chain_is_valid_from_march_2022() -> None:
    certificates = x509.load_pem_x509_certificates(NVIDIA_CHAIN)
    assert max(c.not_valid_before_utc for c in certificates) == NVIDIA_VALID_FROM
    assert min(c.not_valid_after_utc for c in certificates).year == 9999
    verify_nvidia_chain(NVIDIA_CHAIN, [NVIDIA_ROOT], at=NVIDIA_VALID_FROM)
    with pytest.raises(TrustError) as caught:
        verify_nvidia_chain(NVIDIA_CHAIN, [NVIDIA_ROOT], at=NVIDIA_VALID_FROM - DAY)
    assert caught.value.reason == "enrolment.not_yet_valid"
    assert "certificate 2" in caught.value.message


def test_the_real_chain_verifies_without_its_root_copy() -> None:
    blocks = split_pem_certificates(NVIDIA_CHAIN)
    assert len(blocks) == 5
    assert pem_to_der(blocks[-1]) == pem_to_der(NVIDIA_ROOT)
    identity = verify_nvidia_chain(b"\n".join(blocks[:-1]), [NVIDIA_ROOT], at=NVIDIA_AT)
    assert identity.serial == NVIDIA_LEAF_SERIAL


def _nvidia_blocks() -> list[bytes]:
    return split_pem_certificates(NVIDIA_CHAIN)


def _nvidia_flipped(position: int) -> bytes:
    blocks = _nvidia_blocks()
    blocks[position] = der_to_pem(flip(pem_to_der(blocks[position]), -1))
    return b"".join(blocks)


NVIDIA_BAD = [
    ("leaf_signature_flipped", lambda: (_nvidia_flipped(0), [NVIDIA_ROOT]),
     "signature_invalid", "certificate 0 (leaf)"),
    ("intermediate_signature_flipped", lambda: (_nvidia_flipped(2), [NVIDIA_ROOT]),
     "signature_invalid", "certificate 2"),
    ("dropped_intermediate", lambda: (b"".join(_nvidia_blocks()[:1] + _nvidia_blocks()[2:]),
                                      [NVIDIA_ROOT]),
     "issuer_mismatch", "certificate 0 (leaf)"),
    ("wrong_root_rim", lambda: (NVIDIA_CHAIN, [NVIDIA_RIM_ROOT]),
     "root_untrusted", "certificate 4"),
    ("wrong_root_manufacturer", lambda: (NVIDIA_CHAIN, [MAKER.root_pem, OTHER_MAKER.root_pem]),
     "root_untrusted", "certificate 4"),
    ("text_between_certificates", lambda: (b"x".join(_nvidia_blocks()), [NVIDIA_ROOT]),
     "certificate_invalid", "other than PEM"),
    ("no_certificates", lambda: (b"  \n", [NVIDIA_ROOT]),
     "chain_empty", "no certificate"),
    ("too_large", lambda: (NVIDIA_CHAIN + b" " * (5 * MAX_CERTIFICATE_BYTES), [NVIDIA_ROOT]),
     "too_large", "PEM chain"),
    ("six_certificates", lambda: (NVIDIA_CHAIN + _nvidia_blocks()[0], [NVIDIA_ROOT]),
     "chain_too_long", "6 certificates"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "reason", "where"), [pytest.param(*row[1:], id=row[0]) for row in NVIDIA_BAD]
)
def test_a_tampered_nvidia_chain_is_refused(
    build: Callable[[], tuple[bytes, list[bytes]]], reason: str, where: str
) -> None:
    text, roots = build()
    with pytest.raises(BrakepedalError) as caught:
        verify_nvidia_chain(text, roots, at=NVIDIA_AT)
    assert caught.value.reason == f"enrolment.{reason}"
    assert where in caught.value.message


def test_split_refuses_what_is_not_bytes() -> None:
    with pytest.raises(InputError, match=r"enrolment\.certificate_invalid"):
        split_pem_certificates("text")  # type: ignore[arg-type]
