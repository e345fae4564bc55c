"""Paired comparisons over seeds: Student's t interval and p-value (scipy.stats), Holm's correction within a family.

A comparison is a list of per-seed differences (the same seed on both sides). Holm's step-down method keeps
the chance of any false "differs" in a family at 5 % while being uniformly stronger than Bonferroni.
"""

import dataclasses
import math
import statistics
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from scipy import stats

LEVEL = 0.95  # confidence of the intervals; Holm's family-wise error rate is 1 - LEVEL
# Accuracies have 4 decimals (0.01 is one image in 10,000); the float difference of two carries noise near
# 1e-14 (98.2 - 98.0 = 0.20000000000000284), which would make equal differences unequal. Rounded to this.
DECIMALS = 8
TARGET_HALF_WIDTH = 0.1  # accuracy points: the precision the study aims for


def _half_width(std, n):
    """Student's t half-width of the LEVEL interval of a mean of n values with this standard deviation."""
    return stats.t.ppf((1 + LEVEL) / 2, n - 1) * std / math.sqrt(n)


@dataclasses.dataclass
class Comparison:
    name: str  # "se-r8_adam − se-r4_adam"
    family: str  # the comparisons corrected together
    differences: list  # per seed, in accuracy points
    holm_p: float = math.nan  # set by holm()

    def __post_init__(self):
        self.differences = [round(d, DECIMALS) for d in self.differences]

    @property
    def seeds(self):
        return len(self.differences)

    @property
    def exact_mean(self):
        """The mean of the differences as they are written (8 decimals), exactly: rounded once, by fixed()."""
        return statistics.mean(Fraction(repr(d)) for d in self.differences) if self.differences else math.nan

    @property
    def mean(self):
        return float(self.exact_mean)

    @property
    def std(self):
        return statistics.stdev(self.differences) if self.seeds > 1 else math.nan

    @property
    def testable(self):
        """Whether a t-test can judge it: two seeds or more, and differences that are not all the same (quick
        studies: few seeds, few test images). With no spread there is no interval and no p-value, not p 0."""
        return self.seeds > 1 and self.std > 0

    @property
    def half_width(self):
        """Half the width of the LEVEL confidence interval of the mean difference (NaN if not testable)."""
        return _half_width(self.std, self.seeds) if self.testable else math.nan

    @property
    def p(self):
        """Two-sided p-value of the paired t-test (mean difference 0); NaN if not testable."""
        return float(stats.ttest_1samp(self.differences, 0.0).pvalue) if self.testable else math.nan

    @property
    def seeds_for_target(self):
        """Seeds whose interval would have TARGET_HALF_WIDTH at this spread (the spread taken as known)."""
        if not self.testable:
            return self.seeds
        # The normal quantile is below Student's t: its answer is a lower bound, and t's is a few seeds above it.
        seeds = max(2, math.ceil((stats.norm.ppf((1 + LEVEL) / 2) * self.std / TARGET_HALF_WIDTH) ** 2))
        while _half_width(self.std, seeds) > TARGET_HALF_WIDTH:
            seeds += 1
        return seeds

    @property
    def survives(self):
        """Whether the difference stands after Holm's correction in its family (never if not testable)."""
        return self.testable and self.holm_p < 1 - LEVEL


def holm(comparisons):
    """Sets each comparison's Holm-adjusted p-value within the list (one family); the untestable ones are not
    counted and keep NaN."""
    ranked = sorted((c for c in comparisons if not math.isnan(c.p)), key=lambda c: c.p)
    running = 0.0
    for i, comparison in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - i) * comparison.p))
        comparison.holm_p = running
    return comparisons


def fixed(x, digits=2, sign=""):
    """x with `digits` decimals, a tie rounded away from zero (the study's one rule): a Fraction exactly, a float
    as the shortest decimal that reads back as it (what a csv holds). sign "+": a sign on every number."""
    if isinstance(x, Fraction):
        x = Decimal(x.numerator) / Decimal(x.denominator)
    x = Decimal(repr(float(x))) if not isinstance(x, Decimal) else x
    if not x.is_finite():
        return "nan"
    return f"{x.quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP) + 0:{sign}f}"  # + 0: no "-0.00"
