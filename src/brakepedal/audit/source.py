"""Where the auditor reads evidence: a registry over HTTP, or an exported bundle on disk.

The auditor trusts neither. It needs only what any party may check: the log's signed
checkpoints (with the witnesses' cosignatures), consistency proofs between them, the log's
entries (enrolments and signed usage reports, which it re-verifies one by one), and, to hold
the registry to its word, the registry's own published aggregates.

A **bundle** is a directory an auditor exports from a registry
(:func:`export_bundle`) and can audit offline, on another machine, years later::

    checkpoint            the newest signed checkpoint (note text, cosignatures included)
    witnessed             the newest checkpoint the witnesses cosigned (absent if none)
    entries               every log entry, one per line, base64
    aggregates/DAY.json   the registry's public aggregates of each day it exported
    governance/...        the governance repository's files (TUF metadata and targets)
    governance-evidence.json  their inclusion proofs under a witnessed checkpoint

A bundle holds every entry, so its consistency proofs are computed from them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from brakepedal.errors import InputError, TransportError
from brakepedal.tlog.merkle import consistency_proof_from_leaf_hashes, leaf_hash
from brakepedal.tlog.proof import ConsistencyProof

__all__ = [
    "BundleSource",
    "ChallengeSource",
    "EvidenceSource",
    "LocalSource",
    "RegistrySource",
    "export_bundle",
]

#: Entries per request (the registry serves at most 1,000).
PAGE = 1000


class EvidenceSource(Protocol):
    """What an audit reads; every answer is checked, none is believed."""

    name: str

    def checkpoint(self) -> bytes:
        """The newest signed checkpoint note."""
        ...

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        """The newest checkpoint note carrying at least ``cosignatures`` witness
        cosignatures, if any."""
        ...

    def consistency_proof(self, old: int, new: int) -> bytes:
        """The JSON of a consistency proof from size ``old`` to ``new``."""
        ...

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)``."""
        ...

    def aggregates(self, day: date, *, tree_size: int) -> object:
        """The registry's published per-operator aggregates of ``day``, counting the reports
        of the first ``tree_size`` entries (None: not known). Checked by the caller."""
        ...

    def governance(self) -> tuple[dict[str, bytes], bytes] | None:
        """The governance repository's files and their log evidence (None: none published)."""
        ...


@runtime_checkable
class ChallengeSource(Protocol):
    """A registry the auditor can ask to have a device open a report (bundles cannot)."""

    def challenge(self, device: str, sequence: int) -> int:
        """Open a challenge of ``device``'s report ``sequence``; its id."""
        ...

    def challenge_status(self, number: int) -> dict[str, Any]:
        """The challenge as the registry holds it; ``minutes`` once the device answered."""
        ...


class RegistrySource:
    """A registry's HTTP API; ``token`` is an auditor credential (entries need one)."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        self.name = url
        self._client = httpx.Client(
            base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, **params: str | int) -> httpx.Response:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as e:
            raise TransportError("audit.unreachable", f"GET {path}: {e}") from e
        return response

    @staticmethod
    def _json(response: httpx.Response) -> object:
        try:
            return response.json()
        except ValueError as e:
            raise InputError(
                "audit.answer_invalid", f"{response.request.url.path}: not JSON ({e})"
            ) from e

    def _ok(self, path: str, **params: str | int) -> httpx.Response:
        response = self._get(path, **params)
        if response.status_code != 200:
            raise TransportError(
                "audit.registry_refused",
                f"GET {path}: HTTP {response.status_code} {response.text[:200]}",
            )
        return response

    def checkpoint(self) -> bytes:
        return self._ok("/v1/log/checkpoint").content

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        response = self._get("/v1/log/checkpoint/witnessed", cosignatures=max(cosignatures, 1))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TransportError(
                "audit.registry_refused", f"witnessed checkpoint: HTTP {response.status_code}"
            )
        return response.content

    def consistency_proof(self, old: int, new: int) -> bytes:
        return self._ok("/v1/log/proof/consistency", old=old, new=new).content

    def entries(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        for first in range(start, end, PAGE):
            last = min(end, first + PAGE)
            answer = self._json(self._ok("/v1/log/entries", start=first, end=last))
            page = answer.get("entries") if isinstance(answer, dict) else None
            if (
                not isinstance(answer, dict)
                or answer.get("start") != first
                or not isinstance(page, list)
            ):
                raise InputError("audit.entries_invalid", f"entries {first}..{last}: bad answer")
            if len(page) != last - first or not all(isinstance(e, str) for e in page):
                raise InputError(
                    "audit.entries_invalid",
                    f"entries {first}..{last}: {len(page)} entries for {last - first}",
                )
            try:
                out.extend(base64.b64decode(entry, validate=True) for entry in page)
            except (binascii.Error, ValueError) as e:
                raise InputError(
                    "audit.entries_invalid", f"entries {first}..{last}: not base64"
                ) from e
        return out

    def aggregates(self, day: date, *, tree_size: int) -> object:
        return self._json(
            self._ok("/v1/accounting/operators", day=day.isoformat(), tree_size=tree_size)
        )

    def _post_for_int(self, path: str, field: str, reason: str, **body: Any) -> int:
        """POST ``body`` to ``path``; the integer ``field`` of the answer."""
        try:
            response = self._client.post(path, **body)
        except httpx.HTTPError as e:
            raise TransportError("audit.unreachable", f"POST {path}: {e}") from e
        if response.status_code != 200:
            raise TransportError(
                "audit.registry_refused",
                f"POST {path}: HTTP {response.status_code} {response.text[:200]}",
            )
        answer = self._json(response)
        value = answer.get(field) if isinstance(answer, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(reason, f"POST {path}: the registry's answer has no {field}")
        return value

    def publish_findings(self, envelope: bytes) -> int:
        """Append a signed finding set to the registry's log; its log index."""
        return self._post_for_int(
            "/v1/findings", "log_index", "audit.publish_invalid", content=envelope
        )

    def challenge(self, device: str, sequence: int) -> int:
        return self._post_for_int(
            "/v1/challenges",
            "id",
            "audit.challenge_invalid",
            json={"device": device, "sequence": sequence},
        )

    def challenge_status(self, number: int) -> dict[str, Any]:
        answer = self._json(self._ok(f"/v1/challenges/{number}"))
        if not isinstance(answer, dict):
            raise InputError("audit.challenge_invalid", f"challenge {number}: not an object")
        return answer

    def governance(self) -> tuple[dict[str, bytes], bytes] | None:
        index = self._json(self._ok("/v1/governance/files"))
        names = index.get("files") if isinstance(index, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError("audit.governance_invalid", "the governance index is not a list")
        if not names:
            return None
        files = {name: self._ok(f"/v1/governance/files/{name}").content for name in names}
        return files, self._ok("/v1/governance/evidence").content


class BundleSource:
    """An exported bundle directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._path = path
        if not (path / "checkpoint").is_file() or not (path / "entries").is_file():
            raise InputError("audit.bundle_invalid", f"{path}: no checkpoint or entries file")
        self._entries: list[bytes] | None = None

    def _all(self) -> list[bytes]:
        if self._entries is None:
            entries = []
            for number, line in enumerate((self._path / "entries").read_bytes().splitlines()):
                try:
                    entries.append(base64.b64decode(line, validate=True))
                except binascii.Error as e:
                    raise InputError(
                        "audit.bundle_invalid", f"entries line {number + 1}: not base64"
                    ) from e
            self._entries = entries
        return self._entries

    def checkpoint(self) -> bytes:
        return (self._path / "checkpoint").read_bytes()

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        path = self._path / "witnessed"
        return path.read_bytes() if path.is_file() else None

    def consistency_proof(self, old: int, new: int) -> bytes:
        entries = self._all()
        if not 0 < old <= new <= len(entries):
            # Beyond its size, the bundle was exported before the log got there: it cannot
            # answer, which proves nothing about the log (the auditor says so).
            raise InputError(
                "audit.bundle_invalid",
                f"the bundle holds {len(entries)} entries: no consistency proof {old} -> {new}",
            )
        hashes = [leaf_hash(entry) for entry in entries[:new]]
        return ConsistencyProof(
            old, new, tuple(consistency_proof_from_leaf_hashes(old, hashes))
        ).to_json()

    def entries(self, start: int, end: int) -> list[bytes]:
        entries = self._all()
        if not 0 <= start <= end <= len(entries):
            raise InputError(
                "audit.bundle_invalid", f"entries {start}..{end}: the bundle has {len(entries)}"
            )
        return entries[start:end]

    def governance(self) -> tuple[dict[str, bytes], bytes] | None:
        folder = self._path / "governance"
        evidence = self._path / "governance-evidence.json"
        if not folder.is_dir() or not evidence.is_file():
            return None
        files = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        return files, evidence.read_bytes()

    def aggregates(self, day: date, *, tree_size: int) -> object:
        """The aggregates exported with the bundle (as of its tree size, whatever is asked)."""
        path = self._path / "aggregates" / f"{day.isoformat()}.json"
        if not path.is_file():
            return None
        try:
            answer = json.loads(path.read_bytes())
        except ValueError as e:
            raise InputError("audit.bundle_invalid", f"{path.name}: not JSON") from e
        if not isinstance(answer, list):
            raise InputError("audit.bundle_invalid", f"{path.name}: not a list")
        return answer


def export_bundle(
    source: EvidenceSource, out: Path, *, size: int, checkpoint: bytes, days: Iterable[date]
) -> Path:
    """Write ``size`` entries, ``checkpoint`` (of that size), the witnessed checkpoint and the
    aggregates of ``days`` from ``source`` into the bundle directory ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint").write_bytes(checkpoint)
    witnessed = source.witnessed_checkpoint(1)
    if witnessed is not None:
        (out / "witnessed").write_bytes(witnessed)
    with (out / "entries").open("wb") as handle:
        for first in range(0, size, PAGE):
            for entry in source.entries(first, min(size, first + PAGE)):
                handle.write(base64.b64encode(entry) + b"\n")
    governance = source.governance()
    if governance is not None:
        files, evidence = governance
        for name, data in files.items():
            target = out / "governance" / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise InputError("audit.governance_invalid", f"file name {name!r} escapes")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (out / "governance-evidence.json").write_bytes(evidence)
    (out / "aggregates").mkdir(exist_ok=True)
    for day in sorted(set(days)):
        answer = source.aggregates(day, tree_size=size)
        if answer is not None:
            (out / "aggregates" / f"{day.isoformat()}.json").write_text(
                json.dumps(answer, indent=1, sort_keys=True)
            )
    return out


class LocalSource:
    """A registry in this process, as an evidence and challenge source (the simulator and
    benchmarks audit it without HTTP; what it serves is checked like any other source)."""

    def __init__(self, registry: Any, *, auditor: str = "auditor") -> None:
        self._registry = registry
        self._auditor = auditor
        self.name = f"registry {registry.config.origin} (in-process)"

    def checkpoint(self) -> bytes:
        return bytes(self._registry.checkpoint())

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        note = self._registry.witnessed_checkpoint(cosignatures)
        return None if note is None else bytes(note)

    def consistency_proof(self, old: int, new: int) -> bytes:
        hashes = tuple(self._registry.log.consistency_proof(old, new))
        return ConsistencyProof(old, new, hashes).to_json()

    def entries(self, start: int, end: int) -> list[bytes]:
        return list(self._registry.store.read_entries(start, end))

    def aggregates(self, day: date, *, tree_size: int) -> object:
        return self._registry.public_aggregates(day, tree_size=tree_size)

    def governance(self) -> tuple[dict[str, bytes], bytes] | None:
        files = self._registry.governance_files()
        if not files:
            return None
        return dict(files), bytes(self._registry.governance_evidence())

    def challenge(self, device: str, sequence: int) -> int:
        return int(self._registry.challenge(device, sequence, by=self._auditor))

    def challenge_status(self, number: int) -> dict[str, Any]:
        return dict(self._registry.challenge_status(number))
