"""One suite for every LogStore: memory, a SQLite file and PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import create_engine

from brakepedal.errors import InputError, StorageError
from brakepedal.model.limits import Limits
from brakepedal.tlog import merkle
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.merkle import NodeId
from brakepedal.tlog.sqlstore import SqlLogStore, database_url, normalise_store_url
from brakepedal.tlog.store import LogStore
from tests.conftest import LOG_ORIGIN, OpenLogStore

PROOF_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100, 127, 128, 129, 255, 256, 257, 300]


def make_entries(count: int, seed: int) -> list[bytes]:
    """Distinct entries of varied length (0 to 150 bytes), reproducible from ``seed``."""
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(151)) + i.to_bytes(4, "big") for i in range(count)]


def append_in_random_batches(log: TransparencyLog, entries: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    position = 0
    while position < len(entries):
        count = rng.randrange(1, 9)
        assert log.append(entries[position : position + count]) == list(
            range(position, min(len(entries), position + count))
        )
        position += count


def test_append_returns_first_index_and_reads_back(log_store: LogStore) -> None:
    entries = make_entries(40, seed=1)
    assert log_store.size() == 0
    assert log_store.append(entries[:15]) == 0
    assert log_store.append(entries[15:]) == 15
    assert log_store.append([]) == 40
    assert log_store.size() == 40
    assert log_store.read_entries(0, 40) == entries
    assert log_store.read_entries(13, 17) == entries[13:17]
    assert log_store.read_entries(40, 40) == []
    assert log_store.read_level(0, 0, 40) == [merkle.leaf_hash(e) for e in entries]
    assert log_store.origin == LOG_ORIGIN


@pytest.mark.parametrize(("start", "end"), [(0, 41), (-1, 3), (5, 4), (40, 41)])
def test_read_entries_outside_the_log_is_refused(log_store: LogStore, start: int, end: int) -> None:
    log_store.append(make_entries(40, seed=2))
    with pytest.raises(InputError) as caught:
        log_store.read_entries(start, end)
    assert caught.value.reason == "log.index_out_of_range"


@pytest.mark.parametrize("node", [NodeId(0, 10), NodeId(2, 2), NodeId(4, 0)])
def test_read_nodes_of_incomplete_subtrees_is_refused(log_store: LogStore, node: NodeId) -> None:
    log_store.append(make_entries(10, seed=3))
    with pytest.raises(InputError) as caught:
        log_store.read_nodes([NodeId(0, 0), node])
    assert caught.value.reason == "log.node_out_of_range"


def test_oversized_entry_leaves_nothing_behind(log_store: LogStore) -> None:
    log = TransparencyLog(log_store, limits=Limits(max_entry_bytes=64, max_batch_entries=10))
    log.append([b"a" * 64])
    for bad_batch in ([b"b", b"c" * 65, b"d"], [b"e"] * 11, [b"f", "not bytes"]):
        with pytest.raises(InputError):
            log.append(bad_batch)  # type: ignore[arg-type]
        assert log_store.size() == 1
        assert log_store.read_entries(0, 1) == [b"a" * 64]
    with pytest.raises(InputError) as caught:
        log_store.append([b"g", bytearray(b"h")])  # type: ignore[list-item]
    assert caught.value.reason == "log.entry_not_bytes"
    assert log_store.size() == 1
    assert log.append([b"g"]) == [1]
    expected = [merkle.leaf_hash(b"a" * 64), merkle.leaf_hash(b"g")]
    assert log.root() == merkle.root_from_leaf_hashes(expected)


def test_root_equals_reference_for_every_size_to_300(log_store: LogStore) -> None:
    log = TransparencyLog(log_store)
    entries = make_entries(300, seed=4)
    append_in_random_batches(log, entries, seed=5)
    leaf_hashes = [merkle.leaf_hash(entry) for entry in entries]
    assert log.root(0) == merkle.EMPTY_ROOT
    for size in range(1, 301):
        assert log.root(size) == merkle.root_from_leaf_hashes(leaf_hashes[:size]), size
    assert log.root() == log.root(300)


def test_root_equals_reference_for_random_larger_sizes(log_store: LogStore) -> None:
    log = TransparencyLog(log_store)
    rng = random.Random(6)
    entries = make_entries(5000, seed=7)
    position = 0
    while position < len(entries):
        count = rng.choice([1, 255, 256, 257, 1000, 1023])
        log.append(entries[position : position + count])
        position = min(len(entries), position + count)
        leaf_hashes = [merkle.leaf_hash(entry) for entry in entries[:position]]
        assert log.root() == merkle.root_from_leaf_hashes(leaf_hashes), position
    with pytest.raises(InputError):
        log.root(5001)


def test_every_proof_from_the_store_verifies(log_store: LogStore) -> None:
    log = TransparencyLog(log_store)
    entries = make_entries(300, seed=8)
    append_in_random_batches(log, entries, seed=9)
    leaf_hashes = [merkle.leaf_hash(entry) for entry in entries]
    rng = random.Random(20)
    for size in PROOF_SIZES:
        root = merkle.root_from_leaf_hashes(leaf_hashes[:size])
        # Every proof of the small trees; a sample of the larger ones keeps PostgreSQL quick.
        for index in range(size) if size <= 33 else rng.sample(range(size), 20):
            proof = log.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof_from_leaf_hashes(index, leaf_hashes[:size])
            merkle.verify_inclusion(
                leaf_hash=leaf_hashes[index], index=index, size=size, proof=proof, root=root
            )
        for old_size in range(1, size + 1) if size <= 33 else rng.sample(range(1, size + 1), 20):
            proof = log.consistency_proof(old_size, size)
            merkle.verify_consistency(
                old_size=old_size,
                new_size=size,
                old_root=merkle.root_from_leaf_hashes(leaf_hashes[:old_size]),
                new_root=root,
                proof=proof,
            )


def test_a_proof_reads_one_batch_of_log_n_nodes(log_store: LogStore) -> None:
    log = TransparencyLog(log_store)
    size = 5003
    log.append(make_entries(size, seed=10))
    bound = 2 * size.bit_length()
    rng = random.Random(11)
    for _ in range(50):
        before = (log.read_stats.batches, log.read_stats.nodes)
        log.inclusion_proof(rng.randrange(size), size)
        log.consistency_proof(rng.randrange(1, size), size)
        batches = log.read_stats.batches - before[0]
        nodes = log.read_stats.nodes - before[1]
        assert batches == 2
        assert 0 < nodes <= 2 * bound
    before_root = log.read_stats.nodes
    log.root()
    assert log.read_stats.nodes - before_root == size.bit_count()


def test_checkpoints_are_kept_in_order_and_refused_beyond_size(log_store: LogStore) -> None:
    assert log_store.latest_checkpoint() is None
    assert log_store.checkpoints() == []
    log_store.add_checkpoint(0, b"empty")
    log_store.append(make_entries(5, seed=12))
    log_store.add_checkpoint(3, b"three")
    log_store.add_checkpoint(5, b"five")
    log_store.add_checkpoint(5, b"five again")
    for size, reason in [(6, "log.checkpoint_beyond_size"), (4, "log.checkpoint_rollback")]:
        with pytest.raises(InputError) as caught:
            log_store.add_checkpoint(size, b"refused")
        assert caught.value.reason == reason
    expected = [(0, b"empty"), (3, b"three"), (5, b"five"), (5, b"five again")]
    assert log_store.checkpoints() == expected
    assert log_store.latest_checkpoint() == (5, b"five again")


def test_a_reopened_store_holds_everything(open_log_store: OpenLogStore) -> None:
    first = open_log_store()
    log = TransparencyLog(first)
    entries = make_entries(777, seed=13)
    append_in_random_batches(log, entries, seed=14)
    first.add_checkpoint(700, b"note")
    root = log.root()
    first.close()
    reopened = TransparencyLog(open_log_store())
    assert reopened.size() == 777
    assert reopened.store.read_entries(0, 777) == entries
    assert reopened.root() == root
    assert reopened.store.checkpoints() == [(700, b"note")]
    assert reopened.append([b"more"]) == [777]


def test_two_stores_on_one_database_append_alternately(open_log_store: OpenLogStore) -> None:
    logs = [TransparencyLog(open_log_store()), TransparencyLog(open_log_store())]
    entries = make_entries(200, seed=15)
    for turn, position in enumerate(range(0, 200, 7)):
        logs[turn % 2].append(entries[position : position + 7])
        assert logs[(turn + 1) % 2].size() == min(200, position + 7)
    leaf_hashes = [merkle.leaf_hash(entry) for entry in entries]
    for log in logs:
        assert log.store.read_entries(0, 200) == entries
        assert log.root() == merkle.root_from_leaf_hashes(leaf_hashes)


def test_concurrent_writers_serialise(open_log_store: OpenLogStore, log_backend: str) -> None:
    stores = [open_log_store() for _ in range(4)]
    errors: list[BaseException] = []

    def write(store: LogStore, writer: int) -> None:
        try:
            for batch in range(10):
                store.append([f"{writer}:{batch}:{i}".encode() for i in range(writer + 1)])
        except BaseException as e:  # the main thread re-raises it
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    log = TransparencyLog(stores[0])
    entries = log.store.read_entries(0, log.size())
    assert sorted(entries) == sorted(
        f"{w}:{b}:{i}".encode() for w in range(4) for b in range(10) for i in range(w + 1)
    )
    # Each batch is contiguous: atomic appends never interleave.
    for position in range(0, len(entries)):
        writer, batch, i = entries[position].decode().split(":")
        if i != "0":
            assert entries[position - 1] == f"{writer}:{batch}:{int(i) - 1}".encode()
    assert log.root() == merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])


def test_tiles_hold_the_hashes_of_their_level(log_store: LogStore) -> None:
    log = TransparencyLog(log_store)
    entries = make_entries(522, seed=16)
    log.append(entries)
    leaf_hashes = [merkle.leaf_hash(entry) for entry in entries]
    assert log.tile(0, 0, 256) == b"".join(leaf_hashes[:256])
    assert log.tile(0, 2, 10) == b"".join(leaf_hashes[512:522])
    level8 = [merkle.root_from_leaf_hashes(leaf_hashes[i * 256 : (i + 1) * 256]) for i in (0, 1)]
    assert log.tile(1, 0, 2) == b"".join(level8)
    assert log.tile(1, 0, 1) == level8[0]
    for level, index, width, reason in [
        (0, 2, 11, "log.tile_incomplete"),
        (1, 0, 3, "log.tile_incomplete"),
        (2, 0, 1, "log.tile_incomplete"),
        (0, 0, 0, "log.tile_invalid"),
        (0, 0, 257, "log.tile_invalid"),
        (-1, 0, 1, "log.tile_invalid"),
        (9, 0, 1, "log.tile_invalid"),
        (2**40, 0, 1, "log.tile_invalid"),
        (0, 2**64, 1, "log.tile_invalid"),
    ]:
        with pytest.raises(InputError) as caught:
            log.tile(level, index, width)
        assert caught.value.reason == reason


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def test_a_failed_append_transaction_leaves_nothing(sql_url: str) -> None:
    store = SqlLogStore(sql_url, origin=LOG_ORIGIN)
    try:
        store.append(make_entries(3, seed=17))
        # A planted row where the append will write node (1, 2) makes its last insert fail.
        engine = create_engine(normalise_store_url(sql_url))
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO log_nodes (level, idx, hash) "
                "SELECT 1, 2, leaf_hash FROM log_entries WHERE idx = 0"
            )
        with pytest.raises(StorageError) as caught:
            store.append(make_entries(5, seed=18))
        assert caught.value.reason == "store.conflict"
        assert store.size() == 3
        with pytest.raises(InputError):
            store.read_entries(3, 4)
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM log_entries").scalar() == 3
            conn.exec_driver_sql("DELETE FROM log_nodes WHERE level = 1 AND idx = 2")
        engine.dispose()
        assert store.append([b"x"] * 5) == 3
    finally:
        store.close()


def test_a_store_opens_only_the_log_it_was_asked_for(sql_url: str) -> None:
    with pytest.raises(InputError) as caught:
        SqlLogStore.open(sql_url)
    assert caught.value.reason == "store.log_missing"
    SqlLogStore.open(sql_url, create_origin=LOG_ORIGIN).close()
    with pytest.raises(InputError) as caught:
        SqlLogStore(sql_url, origin="someone.else/log")
    assert caught.value.reason == "store.origin_mismatch"
    store = SqlLogStore.open(sql_url)
    assert store.origin == LOG_ORIGIN
    assert TransparencyLog(store).origin == LOG_ORIGIN
    store.close()


def test_database_url_takes_paths_and_urls() -> None:
    assert database_url("/var/lib/log.db") == "sqlite:////var/lib/log.db"
    assert database_url("log.db") == "sqlite:///log.db"
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(InputError) as caught:
        SqlLogStore(url, origin=LOG_ORIGIN)
    assert caught.value.reason in {"store.url_unsupported", "store.url_invalid"}


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://u@h:xx/db", id="port-not-a-number"),
        pytest.param("sqlite:////tmp/a.db?timeout=zz", id="sqlite-query-argument"),
        pytest.param("sqlite:///%00", id="sqlite-nul-in-path"),
    ],
)
def test_malformed_urls_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(InputError) as caught:
        SqlLogStore(url, origin=LOG_ORIGIN)
    assert caught.value.reason == "store.url_invalid"


@pytest.mark.parametrize("path", ["/tmp/a?b.db", "/tmp/a#b.db", "/tmp/100%.db"])
def test_paths_that_would_read_as_url_syntax_are_refused(path: str) -> None:
    with pytest.raises(InputError) as caught:
        database_url(path)
    assert caught.value.reason == "store.path_invalid"


def test_an_unreachable_database_names_the_url_without_its_password() -> None:
    with pytest.raises(StorageError) as caught:
        SqlLogStore("postgres://alice:hunter2@127.0.0.1:1/test", origin=LOG_ORIGIN)
    assert caught.value.reason == "store.unreachable"
    assert "hunter2" not in str(caught.value)
    assert "alice:***@127.0.0.1:1/test" in str(caught.value)
