"""Governance refresh: the agent's verified copy of the registry's governance state.

:class:`GovernanceWatcher` fetches the governance repository and its log evidence from the
registry (:class:`~brakepedal.agent.delivery.RegistryClient`), verifies them with
:meth:`GovernanceView.load <brakepedal.governance.view.GovernanceView.load>` (quorum, expiry,
rollback, mix-and-match, inclusion in a witnessed checkpoint: ``docs/governance.md``), and
only then

* names the state in every usage report from then on (:meth:`GovernanceWatcher.seen`: the
  TUF timestamp version and the size of the witnessed checkpoint), and
* writes it to a **mirror** on disk that the gate reads::

      brakepedal gate --repo MIRROR/repo --trusted-root MIRROR/root.json \\
          --evidence MIRROR/evidence.json ...

**Rollback.** The watcher keeps the timestamp and the role versions it verified last and
passes them back on the next refresh, so a registry (or a mirror in between) cannot replay an
older state that has not expired yet (``governance.rollback``); a witnessed checkpoint smaller
than the last one verified is refused too (``governance_sync.checkpoint_rollback``). The
anchors are kept in ``MIRROR/state.json`` and ``MIRROR/repo/metadata/timestamp.json``, so they
survive a restart of the agent.

**Fail closed, keep reporting.** A refresh that fails (registry unreachable, an answer that is
not what was asked for, anything the view refuses) changes nothing: the last verified state
stays in :meth:`~GovernanceWatcher.seen` and in the mirror, the failure is counted by its
reason (:attr:`GovernanceWatcher.stats`), and :meth:`~GovernanceWatcher.refresh` returns None
instead of raising, because the agent must keep attesting usage whatever governance does.
Failing closed is the gate's part: a gate that cannot verify the mirror (no state yet, or the
last verified timestamp has expired, which a registry that stops publishing causes within a
day) refuses new training in a pause's scope and leaves inference alone. Reports keep naming
the last state the agent verified, so an auditor sees how stale the node's view was.

**The mirror.** It holds exactly the files the verified view used (root chain, timestamp,
snapshot, the targets roles at their snapshot versions) and the documents they sign, plus the
files of the previous verified state, and an ``evidence.json`` with inclusion proofs for all of
them under the newest witnessed checkpoint. Each file is written aside and renamed into place;
new files first, then ``evidence.json``, then ``repo/metadata/timestamp.json``, which switches a
reader to the new state. A reader that read the old timestamp still finds every file it names
and proofs for them; one that listed the folder before the switch and read the timestamp after
it sees a file missing, which it treats like any failed refresh (the gate tries again at its
next poll). Files of older states are removed after the switch. Only names of the form
``metadata/...`` and ``targets/...`` without ``.``/``..`` parts are ever written.

Reasons counted: those of the transport (``delivery.unreachable``, the registry's own reason
for a refusal such as ``registry.governance_disabled``), of the evidence (``evidence.*``), of
the view (``governance.*``, ``agreement.*``, ``checkpoint.*``), and
``governance_sync.answer_invalid``, ``governance_sync.checkpoint_rollback``,
``governance_sync.path_invalid``, ``governance_sync.mirror_failed`` and
``governance_sync.unexpected`` (a bug, logged with its traceback).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from brakepedal.agent.delivery import RegistryClient
from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.limits import Limits
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.wire.report import GovernanceSeen

__all__ = ["MIRROR_STATE_FORMAT", "GovernanceSyncStats", "GovernanceWatcher"]

log = logging.getLogger("brakepedal.agent.governance")

#: The ``format`` of ``MIRROR/state.json``.
MIRROR_STATE_FORMAT = "brakepedal.governance-mirror-state"
_STATE_LIMITS = Limits(max_json_bytes=1_000_000)
_TIMESTAMP = "metadata/timestamp.json"
_ROOT = re.compile(r"metadata/(?P<version>[1-9][0-9]{0,8})\.root\.json")
_NAME = re.compile(r"(metadata|targets)/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


@dataclass
class GovernanceSyncStats:
    """Counts since the watcher started."""

    refreshes: int = 0
    verified: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    #: ``reason: message`` of the latest failed refresh (None once one succeeds again).
    last_failure: str | None = None
    #: The ``at`` of the latest refresh that verified.
    last_verified_at: datetime | None = None


class GovernanceWatcher:
    """The registry's governance state, verified, mirrored for the gate, named in reports.

    ``trusted_root`` is the root metadata this node trusts (distributed out of band, like the
    gate's ``--trusted-root``); ``mirror`` the folder the gate reads. :meth:`refresh` is meant
    for one thread (the agent's delivery loop); :meth:`seen` may be called from any thread.
    """

    def __init__(self, client: RegistryClient, trusted_root: bytes, mirror: Path) -> None:
        self._client = client
        self._trusted_root = bytes(trusted_root)
        self.mirror = mirror
        self.stats = GovernanceSyncStats()
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._view: GovernanceView | None = None
        self._seen: GovernanceSeen | None = None
        self._previous_timestamp: bytes | None = None
        self._previous_versions: dict[str, int] = {}
        self._previous_size = 0
        #: Files of the last state written to the mirror (None: unknown, after a start).
        self._written: set[str] | None = None
        self._load_state()

    # ------------------------------------------------------------------ where the gate reads

    @property
    def repo_path(self) -> Path:
        """The mirrored repository (the gate's ``--repo``)."""
        return self.mirror / "repo"

    @property
    def evidence_path(self) -> Path:
        """The mirrored log evidence (the gate's ``--evidence``)."""
        return self.mirror / "evidence.json"

    @property
    def root_path(self) -> Path:
        """The trusted root (the gate's ``--trusted-root``)."""
        return self.mirror / "root.json"

    @property
    def state_path(self) -> Path:
        return self.mirror / "state.json"

    # ------------------------------------------------------------------ what reports name

    def seen(self) -> GovernanceSeen | None:
        """The last verified state, or None before the first refresh that verified."""
        with self._lock:
            return self._seen

    @property
    def view(self) -> GovernanceView | None:
        """The last verified view, or None before the first refresh that verified."""
        with self._lock:
            return self._view

    # ------------------------------------------------------------------ refreshing

    def refresh(self, at: datetime) -> GovernanceView | None:
        """Fetch, verify at ``at`` and mirror the registry's governance state.

        Returns the newly verified view, or None if this refresh failed; then the last
        verified state stays in force (:meth:`seen`, :attr:`view`, the mirror) and the failure
        is counted in :attr:`stats` by its reason. Nothing is raised: not the failures of the
        transport, of the answer or of verification, nor errors writing the mirror, nor (logged
        with its traceback as ``governance_sync.unexpected``) anything else a registry's
        answer might provoke, because the agent must keep attesting.
        """
        with self._refreshing:
            with self._lock:
                self.stats.refreshes += 1
            try:
                view, seen = self._refresh(at)
            except BrakepedalError as error:
                self._failed(error.reason, error.message)
                return None
            except OSError as error:
                self._failed("governance_sync.mirror_failed", f"{type(error).__name__}: {error}")
                return None
            except Exception as error:
                # Whatever a registry's answer provokes must not stop the agent attesting.
                log.exception("governance refresh failed unexpectedly")
                self._failed("governance_sync.unexpected", f"{type(error).__name__}: {error}")
                return None
            with self._lock:
                self._view, self._seen = view, seen
                self.stats.verified += 1
                self.stats.last_failure = None
                self.stats.last_verified_at = at
            return view

    def _failed(self, reason: str, message: str) -> None:
        with self._lock:
            self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
            self.stats.last_failure = f"{reason}: {message}"
        log.warning("governance refresh failed", extra={"reason": reason, "detail": message})

    def _fetch(self) -> tuple[dict[str, bytes], LogEvidence]:
        """The files, then the evidence: evidence fetched after the files covers them even
        when the registry publishes in between."""
        try:
            files = self._client.governance_files()
            evidence = self._client.governance_evidence()
        except (ValueError, TypeError, AttributeError) as e:  # JSON of another shape
            raise InputError(
                "governance_sync.answer_invalid", f"the registry's answer is malformed: {e!r}"
            ) from e
        return files, LogEvidence.from_bytes(evidence)

    def _refresh(self, at: datetime) -> tuple[GovernanceView, GovernanceSeen]:
        repository, evidence = self._fetch()
        view = GovernanceView.load(
            trusted_root=self._trusted_root,
            repository=repository,
            evidence=evidence,
            at=at,
            previous_timestamp=self._previous_timestamp,
            previous_versions=self._previous_versions,
        )
        agreement = view.agreement
        size = open_checkpoint(
            evidence.checkpoint, agreement.log_verifier(), origin=agreement.log_origin
        ).checkpoint.size
        if size < self._previous_size:
            raise TrustError(
                "governance_sync.checkpoint_rollback",
                f"the witnessed checkpoint has size {size}; this agent verified size "
                f"{self._previous_size} before",
            )
        files = self._verified_files(view, repository)
        kept = self._kept_files(files)
        proofs = {n: p for n, p in evidence.proofs.items() if n in files or n in kept}
        mirrored = LogEvidence(evidence.checkpoint, proofs)
        # What the gate will load from the mirror must verify as it stands.
        GovernanceView.load(
            trusted_root=self._trusted_root, repository=files, evidence=mirrored, at=at
        )
        seen = GovernanceSeen(timestamp_version=view.versions["timestamp"], checkpoint_size=size)
        self._write_mirror(files, mirrored, kept, view, seen)
        self._previous_timestamp = view.timestamp
        self._previous_versions = dict(view.versions)
        self._previous_size = size
        return view, seen

    def _verified_files(
        self, view: GovernanceView, repository: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        """Exactly the files ``view`` verified, with the bytes it verified."""
        roots = sorted(int(m["version"]) for n in view.used_files if (m := _ROOT.fullmatch(n)))
        trusted = f"metadata/{roots[0]}.root.json" if roots else ""
        versioned = f"metadata/{view.versions['timestamp']}.timestamp.json"
        files: dict[str, bytes] = {}
        for name in view.used_files:
            if name == trusted:
                files[name] = self._trusted_root  # the walk started from these bytes
            elif name == versioned:
                files[name] = view.timestamp  # the walk read it as timestamp.json
            else:
                files[name] = repository[name]
        files[_TIMESTAMP] = view.timestamp
        targets = [d.target_path for d in view.documents] + list(view.policy_files)
        for path in targets:
            files[f"targets/{path}"] = repository[f"targets/{path}"]
        for name in files:
            _check_name(name)
        return files

    def _kept_files(self, files: Mapping[str, bytes]) -> set[str]:
        """Mirrored files of the previous state that the new one does not use: kept until
        the next state, for readers that read the old timestamp."""
        written = self._written if self._written is not None else set(self._on_disk())
        return written - set(files)

    # ------------------------------------------------------------------ the mirror

    def _on_disk(self) -> list[str]:
        repo = self.repo_path
        if not repo.is_dir():
            return []
        return sorted(
            p.relative_to(repo).as_posix()
            for folder in ("metadata", "targets")
            if (repo / folder).is_dir()
            for p in (repo / folder).rglob("*")
            if p.is_file()
        )

    def _write_mirror(
        self,
        files: Mapping[str, bytes],
        evidence: LogEvidence,
        kept: set[str],
        view: GovernanceView,
        seen: GovernanceSeen,
    ) -> None:
        incoming = self.mirror / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        writer = _Writer(incoming)
        writer.put(self.root_path, self._trusted_root)
        # Documents before the metadata that signs them, the timestamp last: the switch.
        order = sorted((n for n in files if n != _TIMESTAMP), key=lambda n: (n[0] != "t", n))
        for name in order:
            writer.put(self.repo_path / name, files[name])
        writer.put(self.evidence_path, evidence.to_bytes())
        writer.put(self.repo_path / _TIMESTAMP, files[_TIMESTAMP])
        state = {
            "format": MIRROR_STATE_FORMAT,
            "version": 1,
            "versions": dict(sorted(view.versions.items())),
            "timestamp_version": seen.timestamp_version,
            "checkpoint_size": seen.checkpoint_size,
        }
        writer.put(self.state_path, json.dumps(state, indent=1).encode() + b"\n")
        for name in self._on_disk():
            if name not in files and name not in kept:
                (self.repo_path / name).unlink(missing_ok=True)
        writer.sync()
        self._written = set(files)

    def _load_state(self) -> None:
        """The rollback anchors a previous run left in the mirror, if any and readable."""
        try:
            if not self.state_path.is_file():
                return
            state = parse_json_object(
                self.state_path.read_bytes(), limits=_STATE_LIMITS, what="mirror state"
            )
            versions, size = state.get("versions"), state.get("checkpoint_size")
            if (
                state.get("format") != MIRROR_STATE_FORMAT
                or not isinstance(versions, dict)
                or not all(isinstance(v, int) for v in versions.values())
                or not isinstance(size, int)
            ):
                raise InputError("governance_sync.state_invalid", "not a mirror state")
            timestamp = (self.repo_path / _TIMESTAMP).read_bytes()
        except (BrakepedalError, OSError) as error:
            log.warning("governance mirror state ignored", extra={"detail": str(error)})
            return
        self._previous_versions = {str(k): int(v) for k, v in versions.items()}
        self._previous_size = size
        self._previous_timestamp = timestamp


def _check_name(name: str) -> None:
    """A name the registry gave may be written into the mirror only if it stays inside it."""
    parts = name.split("/")
    if _NAME.fullmatch(name) is None or any(p in (".", "..") for p in parts):
        raise TrustError("governance_sync.path_invalid", f"refusing to mirror {name[:200]!r}")


class _Writer:
    """Writes files whole: aside in ``incoming``, flushed, then renamed into place."""

    def __init__(self, incoming: Path) -> None:
        self._incoming = incoming
        self._folders: set[Path] = set()

    def put(self, path: Path, data: bytes) -> None:
        if path.is_file() and path.read_bytes() == data:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, aside = tempfile.mkstemp(dir=self._incoming, prefix=path.name[:64] + ".")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(aside, path)
        except BaseException:
            Path(aside).unlink(missing_ok=True)
            raise
        self._folders.add(path.parent)

    def sync(self) -> None:
        """Make the renames durable."""
        for folder in sorted(self._folders):
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
