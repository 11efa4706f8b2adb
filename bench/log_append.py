"""Benchmark: transparency log appends and inclusion proofs on every log store.

For each store (memory, a SQLite file in a temporary directory, PostgreSQL when reachable)
append ``--leaves`` random entries in batches and report leaves/s; then time ``--proofs``
inclusion proofs at the full size (median) and count the node hashes each one read. The raw
SHA-256 rate over the same inputs, measured in the same run, gives the ceiling: every leaf
costs about two hashes (its leaf hash and, amortised, one interior node).

    .venv/bin/python bench/log_append.py --leaves 1000000 --json results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from brakepedal.model.limits import Limits
from brakepedal.tlog import merkle
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.sqlstore import SqlLogStore
from brakepedal.tlog.store import LogStore, MemoryLogStore

ORIGIN = "brakepedal.bench/log"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class StoreResult:
    store: str
    leaves: int
    append_seconds: float
    leaves_per_second: float
    ratio_to_sha256_ceiling: float
    proof_median_us: float
    proof_nodes_mean: float
    proof_nodes_max: int


def batches(args: argparse.Namespace) -> Iterator[list[bytes]]:
    """The same pseudo-random entries for every store; generated outside the timed calls."""
    rng = random.Random(args.seed)
    size = args.entry_bytes
    for start in range(0, args.leaves, args.batch):
        count = min(args.batch, args.leaves - start)
        blob = rng.randbytes(size * count)
        yield [blob[i * size : (i + 1) * size] for i in range(count)]


def sha256_ceiling(args: argparse.Namespace) -> float:
    """Raw hashlib.sha256 calls per second over the same number of leaf-sized inputs."""
    sha256, elapsed = hashlib.sha256, 0.0
    for batch in batches(args):
        started = time.perf_counter()
        for entry in batch:
            sha256(b"\x00" + entry).digest()
        elapsed += time.perf_counter() - started
    leaves: int = args.leaves
    return leaves / elapsed


def measure(name: str, store: LogStore, args: argparse.Namespace, ceiling: float) -> StoreResult:
    log = TransparencyLog(store, limits=Limits(max_batch_entries=max(args.batch, 1)))
    elapsed = 0.0
    with Progress(
        f"[bold]{name}[/] appending",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task(name, total=args.leaves)
        for batch in batches(args):
            started = time.perf_counter()
            log.append(batch)
            elapsed += time.perf_counter() - started
            progress.advance(task, len(batch))
    timings, nodes = time_proofs(log, args.proofs, args.seed + 1)
    rate = args.leaves / elapsed
    return StoreResult(
        store=name,
        leaves=log.size(),
        append_seconds=round(elapsed, 3),
        leaves_per_second=round(rate),
        ratio_to_sha256_ceiling=round(rate / (ceiling / 2), 3),
        proof_median_us=round(statistics.median(timings) * 1e6, 1),
        proof_nodes_mean=round(statistics.fmean(nodes), 1),
        proof_nodes_max=max(nodes),
    )


def time_proofs(log: TransparencyLog, count: int, seed: int) -> tuple[list[float], list[int]]:
    """Seconds and node hashes read for ``count`` inclusion proofs at random indices."""
    size, root, rng = log.size(), log.root(), random.Random(seed)
    timings, nodes = [], []
    for index in (rng.randrange(size) for _ in range(count)):
        before = log.read_stats.nodes
        started = time.perf_counter()
        proof = log.inclusion_proof(index, size)
        timings.append(time.perf_counter() - started)
        nodes.append(log.read_stats.nodes - before)
        if len(timings) == 1:  # one check that the figures are for proofs that verify
            leaf = log.store.read_level(0, index, index + 1)[0]
            merkle.verify_inclusion(leaf_hash=leaf, index=index, size=size, proof=proof, root=root)
    return timings, nodes


@contextmanager
def postgres_schema(server_url: str, console: Console) -> Iterator[str | None]:
    """A throwaway schema; None (and a note) when the server cannot be reached."""
    engine = create_engine(server_url)
    schema = f"bench_{uuid.uuid4().hex}"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except OperationalError as e:
        console.print(f"[yellow]PostgreSQL not reachable, skipped:[/] {e.orig}")
        engine.dispose()
        yield None
        return
    try:
        yield f"{server_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


def run_store(
    name: str, args: argparse.Namespace, ceiling: float, console: Console
) -> list[StoreResult]:
    with tempfile.TemporaryDirectory() as directory:
        if name == "memory":
            store: LogStore = MemoryLogStore(ORIGIN)
        elif name == "sqlite":
            store = SqlLogStore(f"sqlite:///{Path(directory) / 'bench.sqlite3'}", origin=ORIGIN)
        else:
            with postgres_schema(args.postgres_url, console) as url:
                if url is None:
                    return []
                store = SqlLogStore(url, origin=ORIGIN)
                try:
                    return [measure(name, store, args, ceiling)]
                finally:
                    store.close()
        try:
            return [measure(name, store, args, ceiling)]
        finally:
            store.close()


def machine() -> dict[str, str | int]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count() or 0,
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def render(results: list[StoreResult], ceiling: float, console: Console) -> None:
    table = Table(title=f"Transparency log append (raw SHA-256: {ceiling:,.0f} hashes/s)")
    for column in (
        "store",
        "leaves",
        "append s",
        "leaves/s",
        "of SHA-256 ceiling",
        "proof median µs",
        "nodes/proof mean",
        "nodes/proof max",
    ):
        table.add_column(column, justify="left" if column == "store" else "right")
    for r in results:
        table.add_row(
            r.store,
            f"{r.leaves:,}",
            f"{r.append_seconds:.2f}",
            f"{r.leaves_per_second:,}",
            f"{r.ratio_to_sha256_ceiling:.0%}",
            f"{r.proof_median_us:,.0f}",
            f"{r.proof_nodes_mean:.1f}",
            str(r.proof_nodes_max),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--entry-bytes", type=int, default=100)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stores", default="memory,sqlite,postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    console = Console(width=120)  # wide enough for every column when piped to a file
    ceiling = sha256_ceiling(args)
    results: list[StoreResult] = []
    for name in args.stores.split(","):
        results.extend(run_store(name, args, ceiling, console))
    render(results, ceiling, console)
    if args.json:
        report = {
            "benchmark": "log_append",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "parameters": {k: str(v) for k, v in vars(args).items() if k != "json"},
            "sha256_hashes_per_second": round(ceiling),
            "sha256_ceiling_leaves_per_second": round(ceiling / 2),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
