"""What a challenged minute record shows about the work: a training step loop or not.

A report's ``workload`` is the operator's claim (the job's attribution), and a policy may exempt
some workloads (the pause preset exempts inference). The averages a report carries cannot
tell a throttled training run from an inference service; the minute records it commits to can,
once a sampling challenge reveals them. The rule here is deliberately simple, and its
thresholds are documented in ``docs/verification.md``: a minute looks like training when the
device was busy for at least 10 s, the tensor pipes were active for at least 60 % of the busy
time, and the power draw has a clear period (a spectral peak holding at least 10 % of the
detrended energy: a synchronous step loop). Inference serves requests as they arrive; FP64
simulation leaves the tensor pipes idle.
"""

from __future__ import annotations

from collections.abc import Sequence

from brakepedal.wire.minute import MinuteRecord

__all__ = ["MIN_SPECTRAL_PPM", "MIN_TENSOR_SHARE_PPM", "looks_like_training", "training_minutes"]

MIN_BUSY_MS = 10_000
MIN_TENSOR_SHARE_PPM = 600_000
MIN_SPECTRAL_PPM = 100_000


def looks_like_training(record: MinuteRecord) -> bool:
    """Whether ``record`` has a training step loop's signature (see the module docstring)."""
    share = record.tensor_active_share_ppm
    return (
        record.busy_ms >= MIN_BUSY_MS
        and share is not None
        and share >= MIN_TENSOR_SHARE_PPM
        and record.spectral_peak_ppm is not None
        and record.spectral_peak_ppm >= MIN_SPECTRAL_PPM
    )


def training_minutes(records: Sequence[MinuteRecord]) -> tuple[int, int]:
    """(minutes that look like training, minutes busy at all) of ``records``."""
    busy = [r for r in records if r.busy_ms >= MIN_BUSY_MS]
    return sum(looks_like_training(r) for r in busy), len(busy)
