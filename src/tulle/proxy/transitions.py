"""Explicit state machines: states and events as small integers, moves as a table.

h11's ``_state.py`` is the model: every state a thing can be in, every event that can
happen to it, and which event moves which state where; a move the table does not
have is a bug in Tulle (`LocalProtocolError`), caught where it happens instead of
turning into a wrong answer later. The table is written as names for people and
compiled into tuples of integers, so a move on the hot path is two tuple indexes.
"""

from __future__ import annotations

from collections.abc import Mapping

from tulle.http import LocalProtocolError


class Machine:
    """The states, events and moves of one kind of state machine."""

    __slots__ = ("_next", "events", "name", "states")

    def __init__(
        self,
        name: str,
        states: tuple[str, ...],
        events: tuple[str, ...],
        moves: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.name = name
        self.states = states
        self.events = events
        for state, out in moves.items():
            assert state in states, state
            for event, target in out.items():
                assert event in events and target in states, (state, event, target)
        # _next[event][state]: the state ``event`` moves ``state`` to, or -1.
        self._next: tuple[tuple[int, ...], ...] = tuple(
            tuple(
                states.index(moves[state][event]) if event in moves.get(state, {}) else -1
                for state in states
            )
            for event in events
        )

    def move(self, state: int, event: int) -> int:
        """The state after ``event`` happens in ``state``."""
        after = self._next[event][state]
        if after < 0:
            raise LocalProtocolError(
                f"{self.name}: {self.events[event]!r} is not allowed while {self.states[state]}"
            )
        return after

    def allows(self, state: int, event: int) -> bool:
        return self._next[event][state] >= 0
