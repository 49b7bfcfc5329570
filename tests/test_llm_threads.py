"""The llama.cpp engine's thread count follows the machine: all cores while they are free, fewer when a busy
neighbour makes the spinning compute threads wait (a fake clock and made-up pass times; no model)."""

from __future__ import annotations

from services.llm.threads import EXPLORE_EVERY_S, PROBE_STEPS, ThreadTuner


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def serve(tuner: ThreadTuner, clock: Clock, cost_per_token: dict[int, float], passes: int, tokens: int = 4) -> list[int]:
    """Run `passes` decoding passes where a pass with n threads costs `cost_per_token[n]` seconds per token."""
    used = []
    for _ in range(passes):
        threads = tuner.threads_for_step()
        seconds = cost_per_token[threads] * tokens
        clock.now += seconds
        tuner.record(threads, seconds, tokens)
        used.append(threads)
    return used


def test_an_idle_machine_keeps_every_core() -> None:
    clock = Clock()
    tuner = ThreadTuner.up_to(2, clock=clock)
    assert tuner.candidates == (1, 2) and tuner.current == 2
    serve(tuner, clock, {1: 0.020, 2: 0.012}, passes=400)
    assert tuner.current == 2


def test_busy_neighbours_move_it_to_one_thread_and_a_quiet_machine_back() -> None:
    clock = Clock()
    tuner = ThreadTuner(candidates=(1, 2), clock=clock)
    serve(tuner, clock, {1: 0.020, 2: 0.012}, passes=200)
    assert tuner.current == 2
    # Two busy processes on the two cores: two spinning threads wait for each other (5 tokens a second), one does not.
    used = serve(tuner, clock, {1: 0.016, 2: 0.200}, passes=200)
    assert tuner.current == 1 and used[-50:].count(1) >= 45
    serve(tuner, clock, {1: 0.020, 2: 0.012}, passes=600)
    assert tuner.current == 2


def test_a_probe_of_a_much_slower_count_ends_after_one_pass() -> None:
    clock = Clock()
    tuner = ThreadTuner(candidates=(1, 2), clock=clock)
    serve(tuner, clock, {1: 0.5, 2: 0.010}, passes=10)
    clock.now += EXPLORE_EVERY_S
    used = serve(tuner, clock, {1: 0.5, 2: 0.010}, passes=PROBE_STEPS)
    assert used.count(1) == 1 and tuner.current == 2


def test_a_fixed_count_is_never_changed() -> None:
    clock = Clock()
    tuner = ThreadTuner.fixed(3, clock=clock)
    assert set(serve(tuner, clock, {3: 0.01}, passes=500)) == {3}


def test_passes_of_different_sizes_are_not_compared() -> None:
    # Two threads were only ever timed on passes of eight sequences (cheap per token), one thread on passes of one:
    # nothing comparable, so the count stays.
    clock = Clock()
    tuner = ThreadTuner(candidates=(1, 2), clock=clock)
    serve(tuner, clock, {1: 0.02, 2: 0.004}, passes=20, tokens=8)
    clock.now += EXPLORE_EVERY_S
    serve(tuner, clock, {1: 0.006, 2: 0.5}, passes=PROBE_STEPS, tokens=1)
    assert tuner.current == 2
