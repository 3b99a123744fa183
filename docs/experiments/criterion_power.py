"""How often issue 10's "above plain MoCo by more than the larger spread" holds by chance.

The benchmark reports a method's patch probe as mean ± s.d. over pretraining seeds x probe
repeats (``summarise`` in ``drasclr/bench/science.py``: 2 seeds x 2 repeats, ddof 1). This
simulates that statistic: each seed's score is drawn from N(mu, sd_seed), each repeat adds
N(0, sd_repeat), and the item holds when DrasCLR's mean exceeds MoCo's by more than the larger
of the two s.d.s. It prints the chance the item holds for a true lead d, and the lead needed
for 80 %. The seed s.d.s are measured ones (cohort 6, four seeds each, rounds 26-27b; the
cohort-0 run of record); nothing here enters the benchmark.

Usage: python docs/experiments/criterion_power.py [--draws N] [--seed S]
"""

from __future__ import annotations

import argparse

import numpy as np


def pass_rate(lead: float, sd_d: float, sd_m: float, seeds: int = 2, repeats: int = 2,
              sd_repeat: float = 0.003, draws: int = 100_000, seed: int = 0) -> float:
    """Share of simulated benchmarks whose DrasCLR mean exceeds MoCo's by the larger s.d."""
    rng = np.random.default_rng(seed)

    def scores(mu: float, sd: float) -> np.ndarray:
        per_seed = rng.normal(mu, sd, (draws, seeds, 1))
        return (per_seed + rng.normal(0, sd_repeat, (draws, seeds, repeats))).reshape(draws, -1)

    d, m = scores(lead, sd_d), scores(0.0, sd_m)
    margin = d.mean(axis=1) - m.mean(axis=1)
    spread = np.maximum(d.std(axis=1, ddof=1), m.std(axis=1, ddof=1))
    return float((margin > spread).mean())


def main() -> None:
    """Print pass rates for the measured seed spreads."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cases = {"cohort 6, four seeds each (0.026 / 0.040)": (0.026, 0.040),
             "cohort 0, run of record's seed pairs (0.026 / 0.046)": (0.026, 0.046)}
    leads = (0.0, 0.015, 0.020, 0.036, 0.050, 0.080, 0.100)
    for name, (sd_d, sd_m) in cases.items():
        rates = [pass_rate(x, sd_d, sd_m, draws=a.draws, seed=a.seed) for x in leads]
        print(name + ": " + ", ".join(f"lead {x:.3f} -> {r:.2f}" for x, r in zip(leads, rates)))
        need = next((x for x in np.arange(0, 0.3, 0.005)
                     if pass_rate(float(x), sd_d, sd_m, draws=a.draws, seed=a.seed) >= 0.8),
                    float("nan"))
        print(f"  lead needed for an 80 % pass rate: {need:.3f}")


if __name__ == "__main__":
    main()
