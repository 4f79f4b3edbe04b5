"""Failure detectors on a fake clock: the fixed-k deadline to the instant, phi
against hand-computed normal tails, and Akka's rules (min std-dev, acceptable
pause, first-heartbeat estimate, the suspicion-ending interval left out,
bounded history)."""

import math

import pytest

from wirelab.apps.detectors import (FixedTimeoutDetector, HeartbeatHistory, PhiAccrualDetector, logistic_tail,
                                    normal_tail, phi_crossing, phi_value)

# 1 - Phi(z) for the standard normal, from tables (Abramowitz & Stegun 26.2).
TAIL = {1: 0.15865525393145707, 2: 0.022750131948179195, 3: 0.0013498980316301035}


def test_fixed_k_fires_exactly_k_intervals_after_the_last_arrival():
    det = FixedTimeoutDetector(k=3, interval=0.1)
    assert det.is_available(0.0) and det.deadline() is None     # nothing monitored yet
    det.heartbeat(10.0)
    assert det.deadline() == pytest.approx(10.3)
    assert det.is_available(10.3 - 1e-9)
    assert not det.is_available(10.0 + 3 * 0.1)
    assert not det.is_available(11.0)
    det.heartbeat(11.0)                                        # the next arrival: alive again
    assert det.is_available(11.0) and not det.is_available(11.3)


def test_fixed_k_grace_moves_the_deadline_by_exactly_the_grace():
    det = FixedTimeoutDetector(k=2, interval=1.0, grace=0.5)
    det.heartbeat(0.0)
    assert det.timeout == 2.5
    assert det.is_available(2.4999) and not det.is_available(2.5)


@pytest.mark.parametrize("kwargs", [{"k": 0, "interval": 1}, {"k": 1.5, "interval": 1}, {"k": True, "interval": 1},
                                    {"k": 3, "interval": 0}, {"k": 3, "interval": 1, "grace": -1}])
def test_fixed_k_refuses_impossible_parameters(kwargs):
    with pytest.raises(ValueError):
        FixedTimeoutDetector(**kwargs)


def test_normal_tail_matches_tables_far_into_the_tail():
    for z, want in TAIL.items():
        assert normal_tail(z) == pytest.approx(want, rel=1e-12)
    assert normal_tail(0) == 0.5
    # phi = 8 at 5.612 standard deviations: 1 - Phi = 1e-8
    assert -math.log10(normal_tail(5.612001244)) == pytest.approx(8.0, abs=1e-6)


def test_first_heartbeat_seeds_the_history_with_the_estimate():
    det = PhiAccrualDetector(first_estimate=1.0, min_std=0.1)
    assert det.phi(5.0) == 0.0 and det.is_available(5.0)       # not monitoring: phi 0
    det.heartbeat(0.0)
    assert list(det.history.intervals) == [0.75, 1.25]         # estimate -+ estimate/4
    assert det.mean() == 1.0 and det.std() == pytest.approx(0.25)
    assert det.phi(1.0) == pytest.approx(-math.log10(0.5))
    for z, tail in TAIL.items():
        assert det.phi(1.0 + z * 0.25) == pytest.approx(-math.log10(tail), rel=1e-9)


def test_min_std_dev_floors_a_regular_history():
    det = PhiAccrualDetector(first_estimate=1.0, min_std=0.1)
    for i in range(99):
        det.heartbeat(float(i))
    # 98 intervals of exactly 1 s plus the two seeds: mean 1, std sqrt(0.125/100) < 0.1
    assert det.history.mean == pytest.approx(1.0)
    assert det.history.std == pytest.approx(math.sqrt(0.125 / 100))
    assert det.std() == 0.1
    last = 98.0
    for z, tail in TAIL.items():
        assert det.phi(last + 1.0 + z * 0.1) == pytest.approx(-math.log10(tail), rel=1e-9)


def test_acceptable_pause_shifts_the_mean():
    det = PhiAccrualDetector(first_estimate=1.0, min_std=0.1, acceptable_pause=0.5)
    det.heartbeat(0.0)
    assert det.mean() == 1.5
    assert det.phi(1.5) == pytest.approx(-math.log10(0.5))
    assert det.phi(1.5 + 2 * 0.25) == pytest.approx(-math.log10(TAIL[2]))


def test_threshold_crossing_is_the_deadline():
    det = PhiAccrualDetector(threshold=8.0, first_estimate=0.1, min_std=0.1)
    det.heartbeat(0.0)
    for t in (0.1, 0.2, 0.3):
        det.heartbeat(t)
    # mean 0.1 exactly, std floored to 0.1: phi = 8 at 0.1 + 5.612 * 0.1
    assert det.mean() == pytest.approx(0.1) and det.std() == 0.1
    assert det.deadline() == pytest.approx(0.3 + 0.1 + 0.5612001244, abs=1e-6)
    assert det.is_available(det.deadline() - 1e-6) and not det.is_available(det.deadline() + 1e-6)
    assert phi_crossing(8.0, 0.1, 0.1) == pytest.approx(0.6612001244, abs=1e-6)


def test_the_interval_that_ends_a_suspicion_is_not_a_sample():
    det = PhiAccrualDetector(first_estimate=1.0, min_std=0.1)
    for t in (0.0, 1.0, 2.0):
        det.heartbeat(t)
    assert len(det.history) == 4
    assert not det.is_available(20.0)
    det.heartbeat(20.0)                      # back after 18 s: not a sample (Akka)
    assert len(det.history) == 4 and det.last == 20.0
    assert det.is_available(20.0)
    det.heartbeat(21.0)
    assert len(det.history) == 5


def test_history_keeps_the_last_max_size_intervals():
    h = HeartbeatHistory(3)
    for x in (10.0, 1.0, 2.0, 3.0):
        h.add(x)
    assert list(h.intervals) == [1.0, 2.0, 3.0]
    assert h.mean == pytest.approx(2.0)
    assert h.std == pytest.approx(math.sqrt(2 / 3))            # population std-dev
    det = PhiAccrualDetector(first_estimate=1.0, max_sample_size=2)
    det.heartbeat(0.0)
    det.heartbeat(1.1)
    assert list(det.history.intervals) == [1.25, pytest.approx(1.1)]


def test_akka_logistic_approximation_is_the_one_akka_uses():
    def akka_phi(diff, mean, std):   # PhiAccrualFailureDetector.phi, transcribed
        y = (diff - mean) / std
        e = math.exp(-y * (1.5976 + 0.070566 * y * y))
        return -math.log10(e / (1.0 + e)) if diff > mean else -math.log10(1.0 - 1.0 / (1.0 + e))
    for diff in (0.05, 0.1, 0.3, 0.5, 0.66, 0.9):
        assert phi_value(diff, 0.1, 0.1, "logistic") == pytest.approx(akka_phi(diff, 0.1, 0.1), rel=1e-9)
    # pessimistic in the tail: 9.27 where the exact value is 7.97
    assert phi_value(5.6, 0.0, 1.0, "logistic") == pytest.approx(9.2674, abs=1e-3)
    assert phi_value(5.6, 0.0, 1.0) == pytest.approx(7.9699, abs=1e-3)
    assert logistic_tail(-100) == pytest.approx(1.0) and logistic_tail(100) == 0.0
    assert phi_value(100, 0, 1) == math.inf


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"min_std": 0}, {"acceptable_pause": -1},
                                    {"first_estimate": 0}, {"cdf": "cauchy"}, {"max_sample_size": 0}])
def test_phi_refuses_impossible_parameters(kwargs):
    with pytest.raises(ValueError):
        PhiAccrualDetector(**kwargs)
