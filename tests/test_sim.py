from week04_lib.sim import simulate_recovery


def test_every_client_finishes_and_calls_are_counted():
    result = simulate_recovery("full", clients=50, seed=1)
    assert len(result.success_times) == 50 and result.calls == len(result.call_times) >= 50
    assert result.finished_s >= 2.0  # nobody succeeds during the outage
    assert result.calls_per_client == result.calls / 50


def test_capacity_is_never_exceeded():
    result = simulate_recovery("none", clients=80, capacity_rps=10, slot_s=0.5)
    per_slot = {}
    for t in result.success_times:
        per_slot[int(t // 0.5)] = per_slot.get(int(t // 0.5), 0) + 1
    assert max(per_slot.values()) <= 5


def test_jitter_beats_lockstep_on_calls_and_time():
    lockstep = simulate_recovery("none")
    for kind in ("full", "equal", "decorrelated"):
        jittered = simulate_recovery(kind)
        assert jittered.calls < lockstep.calls and jittered.finished_s < lockstep.finished_s


def test_seeded_and_reproducible():
    assert simulate_recovery("full", seed=3) == simulate_recovery("full", seed=3)
