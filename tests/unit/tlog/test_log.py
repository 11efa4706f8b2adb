"""TransparencyLog specifics: input bounds, checkpoints, and verify_integrity catching tampering."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from brakepedal.crypto.keys import generate_ed25519
from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import Limits
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import NoteSigner
from brakepedal.tlog.sqlstore import SqlLogStore, normalise_store_url
from brakepedal.tlog.store import LogStore
from tests.conftest import LOG_ORIGIN
from tests.unit.tlog.test_store import make_entries


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner(LOG_ORIGIN, generate_ed25519())


def test_append_bounds_are_enforced(log_store: LogStore) -> None:
    log = TransparencyLog(log_store, limits=Limits(max_entry_bytes=10, max_batch_entries=3))
    assert log.append([]) == []
    assert log.append([b"0123456789", b""]) == [0, 1]
    cases: list[tuple[list[bytes], str]] = [
        ([b"x"] * 4, "log.batch_too_large"),
        ([b"x", b"0123456789a"], "log.entry_too_large"),
        ([b"x", "text"], "log.entry_not_bytes"),  # type: ignore[list-item]
    ]
    for batch, reason in cases:
        with pytest.raises(InputError) as caught:
            log.append(batch)
        assert caught.value.reason == reason
    assert log.size() == 2
    assert log.entry(0) == b"0123456789"
    with pytest.raises(InputError):
        log.entry(2)


def test_proof_arguments_are_checked(log_store: LogStore) -> None:
    log = TransparencyLog(log_store)
    log.append(make_entries(10, seed=1))
    for call in (
        lambda: log.inclusion_proof(10, 10),
        lambda: log.inclusion_proof(-1, 10),
        lambda: log.inclusion_proof(3, 11),
        lambda: log.consistency_proof(0, 5),
        lambda: log.consistency_proof(6, 5),
        lambda: log.consistency_proof(5, 11),
        lambda: log.root(11),
        lambda: log.root(-1),
    ):
        with pytest.raises(InputError) as caught:
            call()
        assert caught.value.reason in {"log.index_out_of_range", "log.size_out_of_range"}
    assert log.consistency_proof(10, 10) == []


def test_checkpoints_are_signed_and_consistent(log_store: LogStore, signer: NoteSigner) -> None:
    log = TransparencyLog(log_store)
    assert log.latest_checkpoint() is None
    assert log.latest_checkpoint_size() is None
    verifier = signer.verifier()
    heads = []
    for count in (0, 1, 6, 0, 250):
        log.append(make_entries(count, seed=count))
        note = log.checkpoint(LOG_ORIGIN, signer)
        assert log.latest_checkpoint() == note
        head = open_checkpoint(note, verifier, origin=LOG_ORIGIN).checkpoint
        assert (head.size, head.root_hash) == (log.size(), log.root())
        heads.append(head)
    for old, new in itertools.pairwise(heads[1:]):
        merkle.verify_consistency(
            old_size=old.size,
            new_size=new.size,
            old_root=old.root_hash,
            new_root=new.root_hash,
            proof=log.consistency_proof(old.size, new.size),
        )
    assert [size for size, _ in log_store.checkpoints()] == [0, 1, 7, 7, 257]
    assert log.latest_checkpoint_size() == 257
    report = log.verify_integrity(verifier)
    # 257 leaves: 128 + 64 + 32 + 16 + 8 + 4 + 2 + 1 interior nodes.
    assert (report.entries, report.nodes, report.checkpoints) == (257, 255, 5)
    assert str(report) == "257 entries, 255 interior nodes and 5 checkpoints verified"


def test_checkpoint_for_another_origin_is_refused(log_store: LogStore, signer: NoteSigner) -> None:
    log = TransparencyLog(log_store)
    with pytest.raises(InputError) as caught:
        log.checkpoint("other.example/log", signer)
    assert caught.value.reason == "log.origin_mismatch"


def test_no_checkpoint_is_signed_over_a_stored_fork(
    log_store: LogStore, signer: NoteSigner
) -> None:
    log = TransparencyLog(log_store)
    log.append(make_entries(5, seed=2))
    forged = sign_checkpoint(Checkpoint(LOG_ORIGIN, 4, merkle.leaf_hash(b"fork")), signer)
    log_store.add_checkpoint(4, forged)
    log.append([b"more"])
    with pytest.raises(TrustError):
        log.checkpoint(LOG_ORIGIN, signer)
    assert log_store.checkpoints() == [(4, forged)]
    with pytest.raises(TrustError) as caught:
        log.verify_integrity(signer.verifier())
    assert caught.value.reason == "log.checkpoint_root_mismatch"


def test_a_checkpoint_by_another_key_fails_integrity(
    log_store: LogStore, signer: NoteSigner
) -> None:
    log = TransparencyLog(log_store)
    log.append(make_entries(3, seed=3))
    log.checkpoint(LOG_ORIGIN, NoteSigner(LOG_ORIGIN, generate_ed25519()))
    with pytest.raises(TrustError) as caught:
        log.verify_integrity(signer.verifier())
    assert caught.value.reason.startswith("note.")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tampered_log(
    request: pytest.FixtureRequest, signer: NoteSigner
) -> Iterator[tuple[TransparencyLog, str]]:
    """A SQL log of 600 entries with three checkpoints, and its URL for editing rows."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    store = SqlLogStore(url, origin=LOG_ORIGIN)
    log = TransparencyLog(store)
    for count in (100, 300, 200):
        log.append(make_entries(count, seed=count))
        log.checkpoint(LOG_ORIGIN, signer)
    log.verify_integrity(signer.verifier())
    yield log, url
    store.close()


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("UPDATE log_entries SET entry = leaf_hash WHERE idx = 417", "log.leaf_hash_mismatch"),
        (
            "UPDATE log_entries SET leaf_hash = (SELECT leaf_hash FROM log_entries WHERE idx = 1)"
            " WHERE idx = 0",
            "log.leaf_hash_mismatch",
        ),
        (
            "UPDATE log_nodes SET hash = (SELECT leaf_hash FROM log_entries WHERE idx = 0)"
            " WHERE level = 3 AND idx = 40",
            "log.node_hash_mismatch",
        ),
        ("DELETE FROM log_nodes WHERE level = 9 AND idx = 0", "store.rows_missing"),
        ("DELETE FROM log_entries WHERE idx = 599", "store.rows_missing"),
        (
            "UPDATE log_checkpoints SET note = (SELECT note FROM log_checkpoints WHERE size = 100)"
            " WHERE size = 400",
            "log.checkpoint_size_mismatch",
        ),
        ("UPDATE log_checkpoints SET size = 50 WHERE size = 100", "log.checkpoint_size_mismatch"),
        (
            "UPDATE log_checkpoints SET note = (SELECT entry FROM log_entries WHERE idx = 3)"
            " WHERE size = 600",
            "log.checkpoint_unreadable",
        ),
    ],
)
def test_verify_integrity_catches_edited_rows(
    tampered_log: tuple[TransparencyLog, str], signer: NoteSigner, statement: str, reason: str
) -> None:
    log, url = tampered_log
    engine = create_engine(normalise_store_url(url))
    with engine.begin() as conn:
        assert conn.exec_driver_sql(statement).rowcount == 1
    engine.dispose()
    with pytest.raises(TrustError) as caught:
        log.verify_integrity(signer.verifier())
    assert caught.value.reason == reason
