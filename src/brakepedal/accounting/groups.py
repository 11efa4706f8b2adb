"""Ownership groups: who controls whom, so compute split across subsidiaries sums.

A lab that must stay under a threshold can spread a training effort across entities it
controls. The control graph turns declared holdings into groups under a configurable
:class:`ControlRule` (the share that confers control, whether it is "more than" or "at least",
whether board control counts, whether control passes through controlled entities), and
:meth:`OwnershipGraph.group_of` names the group every entity's compute is summed into.

Control is computed, not declared: ``A`` controls ``B`` when ``A``'s own voting share in ``B``
plus the shares held by entities ``A`` already controls meets the rule (the usual "indirect
control" of competition and tax law). Entities joined by control in either direction form one
group (weakly connected components), so a joint venture two parents both control joins both
parents' groups: that over-counts a little and never under-counts. A cycle of control (``A``
controls ``B`` and ``B`` controls ``A``) has no meaning and is refused, naming the cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import networkx as nx

from brakepedal.accounting.graphs import component_roots, describe_cycle
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId

__all__ = ["ControlRule", "Holding", "OwnershipGraph"]


@dataclass(frozen=True, slots=True)
class Holding:
    """``holder`` holds ``voting_share`` of ``held``'s votes, and maybe controls its board."""

    holder: EntityId
    held: EntityId
    voting_share: Fraction
    board_control: bool = False

    def __post_init__(self) -> None:
        if self.holder == self.held:
            raise InputError("ownership.self_holding", f"{self.holder} cannot hold itself")
        if not isinstance(self.voting_share, Fraction) or not 0 <= self.voting_share <= 1:
            raise InputError(
                "ownership.share_invalid",
                f"holding {self.holder} -> {self.held}: voting_share must be in [0, 1]",
            )


@dataclass(frozen=True, slots=True)
class ControlRule:
    """When a voting share confers control.

    The default, a share of more than one half or control of the board, passing through
    controlled entities, is the usual definition of a subsidiary (e.g. the "control" of
    California SB 53's affiliates and the EU's group-of-undertakings tests).
    """

    threshold: Fraction = Fraction(1, 2)
    inclusive: bool = False
    board_control: bool = True
    indirect: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, Fraction) or not 0 < self.threshold <= 1:
            raise InputError("ownership.threshold_invalid", "control threshold must be in (0, 1]")

    def confers_control(self, share: Fraction, *, board: bool) -> bool:
        """Whether ``share`` of the votes (or board control) is control under this rule."""
        if board and self.board_control:
            return True
        return share >= self.threshold if self.inclusive else share > self.threshold


class OwnershipGraph:
    """Entities, their holdings, and the groups the control rule makes of them."""

    def __init__(
        self,
        entities: Iterable[EntityId],
        holdings: Iterable[Holding] = (),
        rule: ControlRule | None = None,
    ) -> None:
        self.rule = rule if rule is not None else ControlRule()
        self._holdings: dict[tuple[EntityId, EntityId], Holding] = {}
        known = set(entities)
        for holding in holdings:
            for entity in (holding.holder, holding.held):
                if entity not in known:
                    raise InputError(
                        "ownership.entity_unknown",
                        f"holding {holding.holder} -> {holding.held}: {entity} is not an entity",
                    )
            key = (holding.holder, holding.held)
            if key in self._holdings:
                raise InputError(
                    "ownership.duplicate_holding", f"holding {key[0]} -> {key[1]} listed twice"
                )
            self._holdings[key] = holding
        self._check_totals()
        self.control = self._control_graph(sorted(known))
        self._check_cycles()
        self._group = self._groups()

    def _check_totals(self) -> None:
        totals: dict[EntityId, Fraction] = defaultdict(Fraction)
        for (_, held), holding in self._holdings.items():
            totals[held] += holding.voting_share
        for held, total in sorted(totals.items()):
            if total > 1:
                raise InputError(
                    "ownership.shares_exceed_total",
                    f"holdings in {held} add up to {total} of its votes, more than all of them",
                )

    def _controlled_by(
        self, holder: EntityId, direct: Mapping[EntityId, list[Holding]]
    ) -> set[str]:
        controlled: set[str] = set()
        changed = True
        while changed:
            changed = False
            for held, holdings in direct.items():
                if held in controlled or held == holder:
                    continue
                voters = {holder} | (controlled if self.rule.indirect else set())
                share = sum((h.voting_share for h in holdings if h.holder in voters), Fraction(0))
                board = any(h.board_control for h in holdings if h.holder in voters)
                if self.rule.confers_control(share, board=board):
                    controlled.add(held)
                    changed = True
        return controlled

    def _control_graph(self, entities: list[EntityId]) -> nx.DiGraph[str]:
        direct: dict[EntityId, list[Holding]] = defaultdict(list)
        for holding in self._holdings.values():
            direct[holding.held].append(holding)
        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(entities)
        for holder in entities:
            for held in self._controlled_by(holder, direct):
                graph.add_edge(holder, held)
        return graph

    def _check_cycles(self) -> None:
        cycle = describe_cycle(self.control)
        if cycle is not None:
            raise InputError(
                "ownership.control_cycle",
                f"control cycle: {cycle}; entities cannot control each other",
                remediation="Correct the holdings: control must run one way.",
            )

    def _groups(self) -> dict[str, EntityId]:
        return {entity: EntityId(root) for entity, root in component_roots(self.control).items()}

    @property
    def entities(self) -> tuple[EntityId, ...]:
        return tuple(EntityId(e) for e in sorted(self._group))

    def group_of(self, entity: EntityId) -> EntityId:
        """The group ``entity``'s compute counts toward, named by its (first) ultimate parent.

        Raises:
            InputError: ``ownership.entity_unknown`` for an entity not in the graph.
        """
        try:
            return self._group[entity]
        except KeyError:
            raise InputError(
                "ownership.entity_unknown", f"entity {entity!r} is not in the ownership graph"
            ) from None

    def members(self, group: EntityId) -> tuple[EntityId, ...]:
        """Every entity in ``group``, sorted."""
        return tuple(EntityId(e) for e, g in sorted(self._group.items()) if g == group)

    def groups(self) -> tuple[EntityId, ...]:
        """Every group name, sorted."""
        return tuple(sorted(set(self._group.values())))

    def controls(self, holder: EntityId, held: EntityId) -> bool:
        """Whether ``holder`` controls ``held`` (directly or through controlled entities)."""
        return bool(self.control.has_edge(holder, held))
