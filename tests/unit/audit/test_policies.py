"""Which policies the auditor holds the log to: the newest version of every policy the
parties published in governance, each evaluated; one that does not parse is a finding."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from brakepedal.audit.auditor import _newest_policies, _Run
from brakepedal.governance.documents import PolicyVersion
from brakepedal.governance.repository import propose_document
from brakepedal.governance.view import policy_file_path
from brakepedal.model.types import PolicyId
from tests.unit.governance.world import T0, World

DAY = timedelta(days=1)


PRESETS = Path(__file__).resolve().parents[3] / "src" / "brakepedal" / "policy" / "presets"


def _preset(name: str) -> bytes:
    return (PRESETS / f"{name}.toml").read_bytes()


def _publish_policy(world: World, policy_id: str, version: int, text: bytes) -> None:
    record = PolicyVersion(
        policy_id=PolicyId(policy_id),
        version=version,
        media_type="application/toml",
        content_sha256=hashlib.sha256(text).hexdigest(),
        title=policy_id,
    )
    proposal = propose_document(
        world.files,
        f"{policy_id}-{version}",
        record.target_path,
        record.to_bytes(),
        expires=T0 + 300 * DAY,
        attachments={policy_file_path(record): text},
    )
    quorum = [f"party-{i}" for i in range(1, world.policy_threshold + 1)]
    world.publish(world.sign(proposal, *quorum))


def test_every_published_policy_is_held_at_its_newest_version() -> None:
    world = World()
    world.bootstrap()
    pause = _preset("pause")
    _publish_policy(world, "pause", 1, pause)
    _publish_policy(world, "eu-ai-act", 1, _preset("eu-ai-act"))
    # Version 2 of the pause policy: its own text (the parties amended it).
    amended = pause.replace(b"version = 1", b"version = 2", 1)
    assert amended != pause
    _publish_policy(world, "pause", 2, amended)
    run = _Run()
    policies = _newest_policies(world.view(T0 + DAY), run)
    assert [(str(p.id), p.version) for p in policies] == [("eu-ai-act", 1), ("pause", 2)]
    assert run.drafts == []


def test_nothing_published_holds_the_log_to_no_policy() -> None:
    world = World()
    world.bootstrap()
    run = _Run()
    assert _newest_policies(world.view(T0 + DAY), run) == ()
    assert run.drafts == []


def test_a_published_policy_that_does_not_parse_is_a_finding_and_the_others_still_count() -> None:
    world = World()
    world.bootstrap()
    _publish_policy(world, "pause", 1, _preset("pause"))
    _publish_policy(world, "future", 1, b'[policy]\nid = "future"\nversion = 1\nschema = 99\n')
    run = _Run()
    policies = _newest_policies(world.view(T0 + DAY), run)
    assert [str(p.id) for p in policies] == ["pause"]
    (draft,) = run.drafts
    assert draft.detector == "policy.unevaluable"
    assert draft.key["policy"] == "future"


def test_a_policy_whose_file_names_another_id_or_version_is_a_finding() -> None:
    """Findings name a policy by the id in its text: a record naming another would merge two
    policies' findings under one name."""
    world = World()
    world.bootstrap()
    _publish_policy(world, "pause-2027", 1, _preset("pause"))  # the text says id = "pause"
    _publish_policy(world, "eu-ai-act", 3, _preset("eu-ai-act"))  # the text says version 1
    run = _Run()
    assert _newest_policies(world.view(T0 + DAY), run) == ()
    assert sorted((d.key["policy"], d.key["reason"]) for d in run.drafts) == [
        ("eu-ai-act", "policy.record_mismatch"),
        ("pause-2027", "policy.record_mismatch"),
    ]
