import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from week04_lib.backoff import STRATEGIES, delay, schedule


def test_exponential_doubles_to_the_cap():
    assert schedule("none", 6, base=0.5, cap=4.0) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jittered_schedules_are_reproducible_by_seed():
    for kind in ("full", "equal", "decorrelated"):
        assert schedule(kind, 8, seed=3) == schedule(kind, 8, seed=3) != schedule(kind, 8, seed=4)


def test_equal_jitter_keeps_at_least_half_the_ceiling():
    ceilings = schedule("none", 10)
    assert all(c / 2 <= d <= c for c, d in zip(ceilings, schedule("equal", 10), strict=True))


def test_decorrelated_grows_from_the_previous_delay():
    rng = random.Random(0)
    assert all(0.5 <= delay("decorrelated", 2, previous=1.0, rng=rng) <= 3.0 for _ in range(200))


def test_late_attempts_do_not_overflow():
    assert delay("none", 10_000, rng=random.Random(0)) == 8.0


@pytest.mark.parametrize("bad", [{"kind": "linear"}, {"attempt": 0}, {"base": 2, "cap": 1}])
def test_bad_arguments(bad):
    args = {"kind": "full", "attempt": 1, "base": 0.5, "cap": 8.0} | bad
    with pytest.raises(ValueError):
        delay(args.pop("kind"), args.pop("attempt"), rng=random.Random(0), **args)


@given(
    kind=st.sampled_from(sorted(STRATEGIES)),
    n=st.integers(1, 40),
    base=st.floats(0, 10, allow_nan=False),
    extra=st.floats(0, 100, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_every_delay_stays_within_zero_and_cap(kind, n, base, extra, seed):
    cap = base + extra
    assert all(0 <= d <= cap for d in schedule(kind, n, base=base, cap=cap, seed=seed))
