"""Config validation, and the lease inequality against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxos import Config, ConfigError, NodeId, lease_is_safe

VOTERS = (NodeId(1), NodeId(2), NodeId(3))


@given(st.integers(0, 60), st.integers(2, 60), st.integers(0, 999))
def test_lease_rule_matches_the_derivation(lease: int, election_min: int, drift: int) -> None:
    """Safe iff the leader's longest lease ends before the follower's shortest guard does.

    Leader: the lease ends at most lease*(1+rho) nominal after the heartbeat left.
    Follower: tick #G after receipt comes at least (G-1)*(1-rho) nominal later.
    """
    rho = Fraction(drift, 1000)
    exact = lease * (1 + rho) <= (election_min - 1) * (1 - rho)
    assert lease_is_safe(lease, election_min, drift) == exact


def test_default_config_is_valid() -> None:
    cfg = Config(node_id=NodeId(1), voters=VOTERS)
    assert cfg.peers == (NodeId(2), NodeId(3))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"lease_ticks": 10}, "lease_ticks=10 is unsafe"),
        ({"clock_drift_max_permille": 1000}, "drift"),
        ({"heartbeat_ticks": 10}, "heartbeat_ticks"),
        ({"election_ticks_max": 5}, "election_ticks_min <= election_ticks_max"),
        ({"inflight_slots_max": 0}, "limits must be positive"),
    ],
)
def test_unsafe_or_nonsensical_configs_are_refused(
    overrides: dict[str, int], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Config(node_id=NodeId(1), voters=VOTERS, **overrides)


def test_node_must_be_a_voter_and_ids_start_at_one() -> None:
    with pytest.raises(ConfigError, match="not a voter"):
        Config(node_id=NodeId(4), voters=VOTERS)
    with pytest.raises(ConfigError, match="start at 1"):
        Config(node_id=NodeId(0), voters=(NodeId(0), NodeId(1), NodeId(2)))
    with pytest.raises(ConfigError, match="distinct"):
        Config(node_id=NodeId(1), voters=(NodeId(1), NodeId(1)))
