"""Test doubles that are not mocks of real parts: a virtual clock."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds that only move when a test says so (nothing sleeps)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
