"""Endorsement chains: X.509 certificates that bind a device's signing key to its maker.

**Trust model.** A device signs its usage reports with an Ed25519 key. The registry enrols the
key at the trust level its evidence earns (:data:`TRUST_LEVELS`, weakest first): ``software``
(no chain: a key alone, allowed only where the registry says so), ``manufacturer`` (a
manufacturer CA, real or simulated, certifies the key) and ``hardware`` (the vendor's device
identity PKI binds a key to the chip, as NVIDIA's does for H100 attestation keys). Trust comes
only from the root certificates the verifier is configured with: a chain may end with a copy of
its root (NVIDIA's do), which is dropped when it equals a configured root byte for byte and is
otherwise just another certificate that must be issued by one. The registry verifies a chain at
enrolment; an auditor verifies every logged chain again with the roots it trusts itself
(:mod:`brakepedal.audit.endorsements`), with this same code.

**Verification** (:func:`verify_endorsement`, :func:`verify_nvidia_chain`), leaf first:

1. Parse: 1 to :data:`MAX_CHAIN_CERTIFICATES` PEM certificates of at most
   :data:`MAX_CERTIFICATE_BYTES` each; Ed25519 or ECDSA (P-256/384/521, SHA-2) only.
2. Signatures: certificate *i* is directly issued by *i + 1* (names, then signature, through
   ``Certificate.verify_directly_issued_by``), the last by one trusted root; only then is what
   the certificates say read.
3. Issuers: each is a CA (basic constraints ``ca``, key usage ``keyCertSign``) whose path
   length allows the CA certificates under it (self-issued ones count: stricter than RFC 5280).
4. Validity at ``at`` for every certificate, the trusted root included.
5. No critical extension but basic constraints and key usage; the leaf is not a CA and, when
   it has key usage, may sign (``digitalSignature``).
6. Simulated and vendor-CA chains only: the leaf's key is the device's Ed25519 key, and its
   subject names the device (``serialNumber``) and the catalogue accelerator id (``OU``).

Device certificates made by :class:`Manufacturer` have subject ``O=<manufacturer>,
OU=<accelerator catalogue id>, serialNumber=<serial>, CN=<serial>``, and critical basic
constraints (``ca=False``) and key usage (``digitalSignature``); vendors' CAs must do the same
to enrol at the ``manufacturer`` level.

Not checked here: revocation (CRLs, OCSP: NVIDIA's chain names responders; a registry without
network needs cached responses), and the attestation reports the NVIDIA leaf key signs.

Reasons (all ``enrolment.``): InputError ``roots_empty``, ``too_large``, ``chain_too_long``,
``certificate_invalid``, ``algorithm_unsupported``, and, while building (:class:`Manufacturer`,
:class:`Endorsement`), ``field_invalid``, ``validity_invalid``, ``ca_invalid``; TrustError
``chain_empty``, ``issuer_mismatch``, ``signature_invalid``, ``root_untrusted``, ``not_a_ca``,
``path_length_exceeded``, ``expired``, ``not_yet_valid``, ``extension_unsupported``,
``leaf_is_ca``, ``key_usage_invalid``, ``key_mismatch``, ``fields_missing``, ``fields_invalid``.
A device key that is not a canonical Ed25519 key raises the ``key.*`` reasons of
:mod:`brakepedal.crypto.keys`, and a naive or non-UTC time the ``time.*`` ones.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from brakepedal.crypto.keys import (
    CryptoSigner,
    Key,
    ed25519_public_key,
    key_fingerprint,
    private_key_to_pem,
    require_trusted_key,
    signer_from_pem,
)
from brakepedal.errors import InputError, TrustError
from brakepedal.model.types import utc_datetime
from brakepedal.wire.enrolment import MAX_CERTIFICATE_BYTES, MAX_CHAIN_CERTIFICATES

__all__ = [
    "MAX_CERTIFICATE_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "TRUST_LEVELS",
    "Endorsement",
    "Manufacturer",
    "NvidiaIdentity",
    "check_roots",
    "split_pem_certificates",
    "verify_endorsement",
    "verify_nvidia_chain",
]

TRUST_LEVELS = ("software", "manufacturer", "hardware")  # weakest first
_MAX_CA_BUNDLE_BYTES = 4 * MAX_CERTIFICATE_BYTES

_PEM_CERTIFICATE = rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*-----END CERTIFICATE-----"
_ONE_PEM = re.compile(rb"\s*(" + _PEM_CERTIFICATE + rb")\s*")
_PEM_ANY = re.compile(rb"-----BEGIN ([A-Z ]{1,40})-----[A-Za-z0-9+/=\s]*-----END \1-----")

# Fail closed: a new algorithm is a deliberate change here, with its own tests.
_SIGNATURE_ALGORITHMS = frozenset(
    {
        SignatureAlgorithmOID.ED25519,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_HANDLED_CRITICAL = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE})
# X.520 upper bounds are 64 characters; serialNumber is a PrintableString (no '_').
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:/-]{0,63}")
_ACCELERATOR = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # catalogue ids

# cryptography reports some violations of RFC 5280 and X.520 (a serial number <= 0, a country
# name of 3 letters) as warnings while parsing; we refuse them. catch_warnings() changes
# process-wide state, so parses take turns.
_PARSE_LOCK = threading.Lock()
_PARSE_ERRORS = (
    ValueError,
    KeyError,  # cryptography 48 on a name attribute of an unknown ASN.1 string type
    TypeError,
    x509.DuplicateExtension,
    x509.InvalidVersion,
    x509.UnsupportedGeneralNameType,
    Warning,  # turned into errors while parsing: see _PARSE_LOCK
)

_E = TypeVar("_E", bound=x509.ExtensionType)


@dataclass(frozen=True, slots=True)
class Endorsement:
    """What a verified chain says about a device key."""

    manufacturer: str  # the root's subject O (or CN)
    serial: str  # the device certificate's subject serialNumber
    accelerator: str  # the device certificate's subject OU: a catalogue id
    root_fingerprint: str  # SHA-256 hex of the root's DER
    trust_level: str  # one of TRUST_LEVELS

    def __post_init__(self) -> None:
        if self.trust_level not in TRUST_LEVELS:
            raise InputError(
                "enrolment.field_invalid", f"trust level {self.trust_level!r:.40} is unknown"
            )


@dataclass(frozen=True, slots=True)
class NvidiaIdentity:
    """What a verified NVIDIA device identity chain says about the GPU."""

    manufacturer: str  # the root's subject O ("NVIDIA")
    serial: str  # the leaf's subject serialNumber
    subject: str  # the leaf's subject, RFC 4514
    leaf_public_key: bytes  # SubjectPublicKeyInfo DER: verifies the GPU's attestation reports
    root_fingerprint: str
    trust_level: str = "hardware"


@dataclass(frozen=True, slots=True)
class _Certificate:
    """A parsed certificate whose lazily decoded parts have all been decoded once."""

    where: str
    cert: x509.Certificate
    der: bytes
    subject: x509.Name
    issuer: x509.Name
    extensions: x509.Extensions
    public_key: CertificatePublicKeyTypes
    algorithm: x509.ObjectIdentifier  # of the issuer's signature on it
    not_before: datetime
    not_after: datetime


# ------------------------------------------------------------------------------- parsing


def split_pem_certificates(text: bytes) -> list[bytes]:
    """The PEM certificates in ``text``, in order; only whitespace may lie between them.

    Reasons: ``too_large``, ``certificate_invalid``, ``chain_empty``.
    """
    if not isinstance(text, bytes):
        raise InputError("enrolment.certificate_invalid", "a PEM chain must be bytes")
    if len(text) > MAX_CHAIN_CERTIFICATES * MAX_CERTIFICATE_BYTES:
        raise InputError("enrolment.too_large", f"PEM chain of {len(text)} bytes")
    if re.sub(_PEM_CERTIFICATE, b"", text).strip():
        raise InputError(
            "enrolment.certificate_invalid", "the chain holds text other than PEM certificates"
        )
    blocks = [match.group(0) for match in re.finditer(_PEM_CERTIFICATE, text)]
    if not blocks:
        raise TrustError("enrolment.chain_empty", "the chain holds no certificate")
    return blocks


def _load(pem: bytes, where: str) -> _Certificate:
    if not isinstance(pem, bytes):
        raise InputError("enrolment.certificate_invalid", f"{where} is not bytes")
    if len(pem) > MAX_CERTIFICATE_BYTES:
        raise InputError("enrolment.too_large", f"{where} has {len(pem)} bytes")
    match = _ONE_PEM.fullmatch(pem)
    if match is None:
        raise InputError("enrolment.certificate_invalid", f"{where} is not one PEM certificate")
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            cert = x509.load_pem_x509_certificate(match.group(1))
            parsed = _Certificate(
                where=where,
                cert=cert,
                der=cert.public_bytes(Encoding.DER),
                subject=cert.subject,
                issuer=cert.issuer,
                extensions=cert.extensions,
                public_key=cert.public_key(),
                algorithm=cert.signature_algorithm_oid,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
            )
            # DER lets a BIT STRING end in unused bits; cryptography verifies the signature's
            # bytes without them, so one certificate could have many encodings.
            if parsed.der[-len(cert.signature) - 1] != 0:
                raise ValueError("the signature BIT STRING has unused bits")
        except UnsupportedAlgorithm as e:
            raise InputError("enrolment.algorithm_unsupported", f"{where}: {e!s:.200}") from e
        except _PARSE_ERRORS as e:
            raise InputError(
                "enrolment.certificate_invalid", f"{where} is not an X.509 certificate: {e!s:.200}"
            ) from e
    _check_algorithm(parsed)
    return parsed


def _check_algorithm(cert: _Certificate) -> None:
    key = cert.public_key
    if cert.algorithm not in _SIGNATURE_ALGORITHMS or not (
        isinstance(key, Ed25519PublicKey)
        or (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES))
    ):
        raise InputError(
            "enrolment.algorithm_unsupported",
            f"{cert.where}: signed with {cert.algorithm.dotted_string}, holds a "
            f"{type(key).__name__}; only Ed25519 and ECDSA P-256/384/521 with SHA-2 are accepted",
        )


def _load_chain(chain: Sequence[bytes]) -> list[_Certificate]:
    if not chain:
        raise TrustError("enrolment.chain_empty", "the endorsement chain holds no certificate")
    if len(chain) > MAX_CHAIN_CERTIFICATES:
        raise InputError(
            "enrolment.chain_too_long",
            f"the chain has {len(chain)} certificates, more than {MAX_CHAIN_CERTIFICATES}",
        )
    return [
        _load(pem, f"certificate {i}{' (leaf)' if i == 0 else ''}") for i, pem in enumerate(chain)
    ]


def check_roots(roots: Sequence[bytes]) -> None:
    """Refuse trusted roots that are not one PEM certificate each (``enrolment.roots_empty``,
    ``certificate_invalid``, ``algorithm_unsupported``...), naming the root: a configuration
    error, to raise before any chain is judged against them."""
    _load_roots(roots)


def _load_roots(roots: Sequence[bytes]) -> list[_Certificate]:
    if not roots:
        raise InputError("enrolment.roots_empty", "no trusted root: nothing can verify")
    return [_load(pem, f"trusted root {i}") for i, pem in enumerate(roots)]


# -------------------------------------------------------------------------- verification


def verify_endorsement(
    chain: Sequence[bytes], device_key: Key, roots: Sequence[bytes], *, at: datetime
) -> Endorsement:
    """Verify a PEM chain (leaf first, root optional) for ``device_key`` at time ``at``.

    Returns what the chain says, at trust level ``manufacturer``; raises for the reasons in
    the module docstring.
    """
    moment = utc_datetime(at)
    key = require_trusted_key(device_key)
    trusted = _load_roots(roots)
    leaf, root = _verify_path(_load_chain(chain), trusted, moment)
    leaf_key = leaf.public_key
    if not isinstance(leaf_key, Ed25519PublicKey):
        raise TrustError(
            "enrolment.key_mismatch",
            f"{leaf.where} holds a {type(leaf_key).__name__}, not the device's Ed25519 key",
        )
    certified = ed25519_public_key(leaf_key.public_bytes_raw())
    if certified.keyval != key.keyval:
        raise TrustError(
            "enrolment.key_mismatch",
            f"{leaf.where} certifies key {key_fingerprint(certified)[:16]}, "
            f"not the device key {key_fingerprint(key)[:16]}",
        )
    return Endorsement(
        manufacturer=_manufacturer(root),
        serial=_attribute(leaf, NameOID.SERIAL_NUMBER, "serialNumber", _SERIAL),
        accelerator=_attribute(leaf, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", _ACCELERATOR),
        root_fingerprint=hashlib.sha256(root.der).hexdigest(),
        trust_level="manufacturer",
    )


def verify_nvidia_chain(
    chain_pem_text: bytes, roots: Sequence[bytes], *, at: datetime
) -> NvidiaIdentity:
    """Verify NVIDIA's device identity chain (concatenated PEMs, leaf first, root last).

    The same steps as :func:`verify_endorsement` but the key match: the leaf's ECDSA P-384
    key is the GPU's own, which signs its attestation reports (not checked here).
    """
    moment = utc_datetime(at)
    trusted = _load_roots(roots)
    leaf, root = _verify_path(_load_chain(split_pem_certificates(chain_pem_text)), trusted, moment)
    return NvidiaIdentity(
        manufacturer=_manufacturer(root),
        serial=_attribute(leaf, NameOID.SERIAL_NUMBER, "serialNumber", _SERIAL),
        subject=leaf.subject.rfc4514_string(),
        leaf_public_key=leaf.public_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        ),
        root_fingerprint=hashlib.sha256(root.der).hexdigest(),
    )


def _verify_path(
    chain: list[_Certificate], roots: list[_Certificate], at: datetime
) -> tuple[_Certificate, _Certificate]:
    """Steps 2 to 5 of the module docstring; returns the leaf and the trusted root."""
    if chain[-1].der in {root.der for root in roots}:
        chain = chain[:-1]
        if not chain:
            raise TrustError(
                "enrolment.chain_empty", "the chain holds only a trusted root, no device"
            )
    # Signatures first: nothing a certificate says counts before its issuer vouches for it.
    for child, issuer in itertools.pairwise(chain):
        _verify_link(child, issuer)
    root = _trusted_issuer(chain[-1], roots)
    for below, (child, issuer) in enumerate(zip(chain, [*chain[1:], root], strict=True)):
        _require_ca(issuer, child, below)
    for cert in [*chain, root]:
        _check_validity(cert, at)
        _check_critical_extensions(cert)
    leaf = chain[0]
    constraints = _extension(leaf, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise TrustError("enrolment.leaf_is_ca", f"{leaf.where} is a CA, not a device")
    usage = _extension(leaf, x509.KeyUsage)
    if usage is not None and not usage.digital_signature:
        raise TrustError("enrolment.key_usage_invalid", f"{leaf.where}'s key may not sign")
    return leaf, root


def _verify_link(child: _Certificate, issuer: _Certificate) -> None:
    if child.issuer != issuer.subject:
        raise TrustError(
            "enrolment.issuer_mismatch",
            f"{child.where} names issuer {_name(child.issuer)}, but {issuer.where} is "
            f"{_name(issuer.subject)}",
        )
    if not _signed_by(child, issuer):
        raise TrustError(
            "enrolment.signature_invalid",
            f"{child.where}'s signature does not verify under {issuer.where}'s key",
        )


def _trusted_issuer(top: _Certificate, roots: list[_Certificate]) -> _Certificate:
    named = [root for root in roots if root.subject == top.issuer]
    if not named:
        raise TrustError(
            "enrolment.root_untrusted",
            f"{top.where} is issued by {_name(top.issuer)}, which is not a trusted root",
        )
    for root in named:
        if _signed_by(top, root):
            return root
    raise TrustError(
        "enrolment.signature_invalid",
        f"{top.where}'s signature does not verify under trusted root {_name(top.issuer)}",
    )


def _signed_by(child: _Certificate, issuer: _Certificate) -> bool:
    try:
        child.cert.verify_directly_issued_by(issuer.cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _require_ca(issuer: _Certificate, child: _Certificate, below: int) -> None:
    """``issuer`` may sign certificates, with ``below`` CA certificates under it to the leaf."""
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise TrustError(
            "enrolment.not_a_ca", f"{issuer.where} issued {child.where} but is not a CA"
        )
    usage = _extension(issuer, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        raise TrustError("enrolment.not_a_ca", f"{issuer.where} lacks the keyCertSign key usage")
    if constraints.path_length is not None and below > constraints.path_length:
        raise TrustError(
            "enrolment.path_length_exceeded",
            f"{issuer.where} allows {constraints.path_length} CA certificates under it, "
            f"the chain has {below}",
        )


def _check_validity(cert: _Certificate, at: datetime) -> None:
    if at < cert.not_before:
        raise TrustError(
            "enrolment.not_yet_valid",
            f"{cert.where} is valid from {cert.not_before.isoformat()}, after {at.isoformat()}",
        )
    if at > cert.not_after:
        raise TrustError(
            "enrolment.expired",
            f"{cert.where} expired at {cert.not_after.isoformat()}, before {at.isoformat()}",
        )


def _check_critical_extensions(cert: _Certificate) -> None:
    for extension in cert.extensions:
        if extension.critical and extension.oid not in _HANDLED_CRITICAL:
            raise TrustError(
                "enrolment.extension_unsupported",
                f"{cert.where} has critical extension {extension.oid.dotted_string}, "
                "which this verifier does not enforce",
            )


def _extension(cert: _Certificate, kind: type[_E]) -> _E | None:
    for extension in cert.extensions:
        if isinstance(extension.value, kind):
            return extension.value
    return None


def _name(name: x509.Name) -> str:
    return repr(name.rfc4514_string()[:200])


def _attribute(
    cert: _Certificate, oid: x509.ObjectIdentifier, label: str, form: re.Pattern[str]
) -> str:
    values = [a.value for a in cert.subject.get_attributes_for_oid(oid)]
    if not values:
        raise TrustError("enrolment.fields_missing", f"{cert.where}'s subject has no {label}")
    value = values[0]
    if len(values) > 1 or not isinstance(value, str) or form.fullmatch(value) is None:
        raise TrustError(
            "enrolment.fields_invalid",
            f"{cert.where}'s subject needs one {label} matching {form.pattern}",
        )
    return value


def _manufacturer(root: _Certificate) -> str:
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        values = root.subject.get_attributes_for_oid(oid)
        if len(values) == 1 and isinstance(values[0].value, str) and values[0].value:
            return values[0].value
    raise TrustError("enrolment.fields_missing", f"{root.where}'s subject has no O or CN")


# ------------------------------------------------------------------ simulated manufacturer


class Manufacturer:
    """A simulated manufacturer CA: a root and an intermediate, Ed25519 keys.

    The root (path length 1) issues the intermediate (path length 0), which issues device
    certificates. The constructor checks that the parts fit (``ca_invalid``): each key is its
    certificate's, and the root issued itself and the intermediate as CAs.
    """

    __slots__ = ("_intermediate", "_intermediate_key", "_root", "_root_key")

    def __init__(
        self,
        root: x509.Certificate,
        root_key: Ed25519PrivateKey,
        intermediate: x509.Certificate,
        intermediate_key: Ed25519PrivateKey,
    ) -> None:
        _check_ca_part("root", root, root_key, root)
        _check_ca_part("intermediate", intermediate, intermediate_key, root)
        self._root, self._root_key = root, root_key
        self._intermediate, self._intermediate_key = intermediate, intermediate_key

    @classmethod
    def generate(cls, name: str, *, now: datetime, years: int = 10) -> Manufacturer:
        """A new CA named ``name`` (subject O), valid from ``now`` for ``years`` years."""
        start = utc_datetime(now).replace(microsecond=0)
        if not 0 < len(name) <= 64 or not name.isprintable() or name != name.strip():
            raise InputError("enrolment.field_invalid", "a name is 1 to 64 printable characters")
        if isinstance(years, bool) or not 1 <= years <= 100:
            raise InputError("enrolment.validity_invalid", "years must be 1 to 100")
        try:
            end = start.replace(year=start.year + years)
        except ValueError:  # 29 February
            end = start.replace(year=start.year + years, day=28)
        root_key, intermediate_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        root_name = _subject(O=name, CN=f"{name[:56]} Root CA")
        by_root = _Issuer(root_name, root_key, (start, end))
        root = _issue(root_name, root_key.public_key(), by_root, path_length=1)
        intermediate_name = _subject(O=name, CN=f"{name[:54]} Device CA")
        intermediate = _issue(
            intermediate_name, intermediate_key.public_key(), by_root, path_length=0
        )
        return cls(root, root_key, intermediate, intermediate_key)

    @property
    def name(self) -> str:
        """The manufacturer's name: its root's subject O."""
        return str(self._root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value)

    @property
    def root_pem(self) -> bytes:
        """The root certificate: what a registry configures as a trusted root."""
        return self._root.public_bytes(Encoding.PEM)

    @property
    def intermediate_pem(self) -> bytes:
        """The intermediate (device CA) certificate, second in every chain."""
        return self._intermediate.public_bytes(Encoding.PEM)

    def endorse(
        self, device_key: Key, *, serial: str, accelerator: str, now: datetime, days: int = 3650
    ) -> list[bytes]:
        """PEM chain, leaf first: [device certificate, intermediate].

        The device certificate's public key IS the device's Ed25519 key; it is valid from
        ``now`` for ``days`` days, cut short at the intermediate's own expiry.
        """
        start = utc_datetime(now).replace(microsecond=0)
        raw = bytes.fromhex(require_trusted_key(device_key).keyval["public"])
        if _SERIAL.fullmatch(serial) is None or _ACCELERATOR.fullmatch(accelerator) is None:
            raise InputError(
                "enrolment.field_invalid",
                f"serial must match {_SERIAL.pattern}, accelerator {_ACCELERATOR.pattern}",
            )
        if isinstance(days, bool) or days < 1:
            raise InputError("enrolment.validity_invalid", "days must be a positive integer")
        end = min(start + timedelta(days=days), self._intermediate.not_valid_after_utc)
        if not self._intermediate.not_valid_before_utc <= start < end:
            raise InputError("enrolment.validity_invalid", f"the CA is not valid at {start}")
        subject = _subject(O=self.name, OU=accelerator, serialNumber=serial, CN=serial)
        issuer = _Issuer(self._intermediate.subject, self._intermediate_key, (start, end))
        leaf = _issue(subject, Ed25519PublicKey.from_public_bytes(raw), issuer, path_length=None)
        return [leaf.public_bytes(Encoding.PEM), self.intermediate_pem]

    def to_pem(self, *, password: bytes | None = None) -> bytes:
        """The CA as one PEM bundle, secret: the root and intermediate certificates, then
        their PKCS#8 private keys, encrypted when ``password`` is given."""
        keys = [
            private_key_to_pem(
                CryptoSigner(key, ed25519_public_key(key.public_key().public_bytes_raw())),
                password=password,
            )
            for key in (self._root_key, self._intermediate_key)
        ]
        return b"".join([self.root_pem, self.intermediate_pem, *keys])

    @classmethod
    def from_pem(cls, data: bytes, *, password: bytes | None = None) -> Manufacturer:
        """Load a bundle written by :meth:`to_pem`. Reasons: ``too_large``, ``ca_invalid``,
        ``certificate_invalid``, and the ``key.*`` ones of ``signer_from_pem``."""
        if len(data) > _MAX_CA_BUNDLE_BYTES:
            raise InputError("enrolment.too_large", f"a CA bundle of {len(data)} bytes")
        blocks = [match.group(0) for match in _PEM_ANY.finditer(data)]
        if _PEM_ANY.sub(b"", data).strip() or len(blocks) != 4:
            raise InputError("enrolment.ca_invalid", "a CA bundle is 2 certificates, 2 keys")
        root = _load(blocks[0], "CA certificate 0").cert
        intermediate = _load(blocks[1], "CA certificate 1").cert
        root_key, intermediate_key = (_private_key(pem, password) for pem in blocks[2:])
        return cls(root, root_key, intermediate, intermediate_key)


def _check_ca_part(
    what: str, cert: x509.Certificate, key: Ed25519PrivateKey, root: x509.Certificate
) -> None:
    if cert.public_key() != key.public_key():
        raise InputError("enrolment.ca_invalid", f"the {what} key is not its certificate's")
    try:
        cert.verify_directly_issued_by(root)
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound) as e:
        raise InputError("enrolment.ca_invalid", f"the root did not issue the {what}") from e
    if not is_ca:
        raise InputError("enrolment.ca_invalid", f"the {what} certificate is not a CA")


def _private_key(pem: bytes, password: bytes | None) -> Ed25519PrivateKey:
    # signer_from_pem gives the key.* reasons and insists on Ed25519.
    key = load_pem_private_key(signer_from_pem(pem, password=password).private_bytes, None)
    if not isinstance(key, Ed25519PrivateKey):  # pragma: no cover (signer_from_pem checked)
        raise InputError("key.type_unsupported", "only Ed25519 keys are supported")
    return key


@dataclass(frozen=True, slots=True)
class _Issuer:
    name: x509.Name
    key: Ed25519PrivateKey
    validity: tuple[datetime, datetime]  # of the certificates it issues


def _subject(**attributes: str) -> x509.Name:
    oids = {
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "serialNumber": NameOID.SERIAL_NUMBER,
        "CN": NameOID.COMMON_NAME,
    }
    return x509.Name([x509.NameAttribute(oids[label], text) for label, text in attributes.items()])


def _issue(
    subject: x509.Name, public_key: Ed25519PublicKey, issuer: _Issuer, *, path_length: int | None
) -> x509.Certificate:
    """A certificate for ``public_key``: a CA when ``path_length`` is given, else a device."""
    ca = path_length is not None
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(issuer.validity[0])
        .not_valid_after(issuer.validity[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, algorithm=None)
    )
