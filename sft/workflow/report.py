"""Theory against simulation, side by side: a table of z-scores with a pass/fail flag per quantity.

A :class:`Comparison` is one quantity: its theory value, a simulation estimate and the estimate's
one-standard-error bar; z = (estimate - theory) / error, and it passes when |z| < z_max
(default :data:`sft.conventions.Z_MAX`). A :class:`Report` collects comparisons, prints them as an
aligned plain-text table (``str`` and ``repr``), raises one AssertionError listing every failure
(:meth:`Report.assert_all_pass`, for tests), and round-trips through a JSON-serializable dict
(:meth:`Report.to_dict`, :meth:`Report.from_dict`, for caching next to simulation results).

>>> r = Report("one neuron of a width-20 linear layer")
>>> r.add("excess kurtosis", theory=0.3, estimate=0.312, error=0.02).passed
True
>>> round(r.add("variance", theory=1.0, estimate=1.09, error=0.01).z, 9)
9.0
>>> print(r)
one neuron of a width-20 linear layer  (pass: |z| < 4)
quantity         theory  simulation  error      z  pass
---------------  ------  ----------  -----  -----  ----
excess kurtosis     0.3       0.312   0.02  +0.60  ok
variance              1        1.09   0.01  +9.00  FAIL
>>> r.assert_all_pass()
Traceback (most recent call last):
...
AssertionError: 1 of 2 comparisons fail (|z| >= 4) in 'one neuron of a width-20 linear layer': variance: theory 1, simulation 1.09 +- 0.01, z = +9.00
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..conventions import Z_MAX

__all__ = ["Comparison", "Report"]


def _finite(name, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not allowed: give a real scalar") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r} is not allowed: it must be finite")
    return v


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One quantity: theory value, simulation estimate, its standard error (> 0), and z_max (> 0)."""

    name: str
    theory: float
    estimate: float
    error: float
    z_max: float = Z_MAX

    def __post_init__(self):
        for field in ("theory", "estimate", "error", "z_max"):
            object.__setattr__(self, field, _finite(field, getattr(self, field)))
        if self.error <= 0:
            raise ValueError(f"error={self.error!r} is not allowed for {self.name!r}: the standard "
                             "error must be > 0 (a z-score needs an error bar)")
        if self.z_max <= 0:
            raise ValueError(f"z_max={self.z_max!r} is not allowed: it must be > 0")

    @property
    def z(self) -> float:
        """z = (estimate - theory) / error."""
        return (self.estimate - self.theory) / self.error

    @property
    def passed(self) -> bool:
        """|z| < z_max."""
        return abs(self.z) < self.z_max

    def describe(self) -> str:
        """One line: name, theory, simulation +- error, z."""
        return (f"{self.name}: theory {self.theory:.6g}, simulation {self.estimate:.6g} "
                f"+- {self.error:.3g}, z = {self.z:+.2f}")


@dataclasses.dataclass(repr=False)
class Report:
    """A titled list of :class:`Comparison` s sharing one pass threshold ``z_max``."""

    title: str = ""
    comparisons: list[Comparison] = dataclasses.field(default_factory=list)
    z_max: float = Z_MAX

    def __post_init__(self):
        self.z_max = _finite("z_max", self.z_max)
        if self.z_max <= 0:
            raise ValueError(f"z_max={self.z_max!r} is not allowed: it must be > 0")
        self.comparisons = list(self.comparisons)

    def add(self, name, *, theory, estimate, error) -> Comparison:
        """Append the comparison of ``estimate +- error`` with ``theory`` (scalars); returns it."""
        c = Comparison(str(name), theory, estimate, error, self.z_max)
        self.comparisons.append(c)
        return c

    @property
    def failures(self) -> list[Comparison]:
        """The comparisons with |z| >= z_max."""
        return [c for c in self.comparisons if not c.passed]

    @property
    def passed(self) -> bool:
        """True when every comparison passes (and there is at least one)."""
        return bool(self.comparisons) and not self.failures

    def assert_all_pass(self) -> None:
        """Raise AssertionError listing every failing comparison (or saying the report is empty)."""
        where = f" in {self.title!r}" if self.title else ""
        if not self.comparisons:
            raise AssertionError(f"no comparisons{where}: nothing was checked")
        bad = self.failures
        if bad:
            raise AssertionError(f"{len(bad)} of {len(self.comparisons)} comparisons fail "
                                 f"(|z| >= {self.z_max:g}){where}: "
                                 + "; ".join(c.describe() for c in bad))

    def table(self) -> str:
        """The aligned plain-text table (title line, header, rule, one row per comparison)."""
        head = ("quantity", "theory", "simulation", "error", "z", "pass")
        rows = [(c.name, f"{c.theory:.6g}", f"{c.estimate:.6g}", f"{c.error:.3g}", f"{c.z:+.2f}",
                 "ok" if c.passed else "FAIL") for c in self.comparisons]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        right = {1, 2, 3, 4}  # numbers right-aligned

        def line(cells):
            return "  ".join(s.rjust(w) if i in right else s.ljust(w)
                             for i, (s, w) in enumerate(zip(cells, widths))).rstrip()
        title = f"{self.title}  (pass: |z| < {self.z_max:g})" if self.title else f"(pass: |z| < {self.z_max:g})"
        return "\n".join([title, line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])

    __str__ = table

    def __repr__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict: title, z_max, and per comparison its fields plus z and passed."""
        return {"title": self.title, "z_max": self.z_max,
                "comparisons": [dict(name=c.name, theory=c.theory, estimate=c.estimate, error=c.error,
                                     z=c.z, passed=c.passed) for c in self.comparisons]}

    @classmethod
    def from_dict(cls, data) -> "Report":
        """Inverse of :meth:`to_dict` (z and passed are recomputed, not read)."""
        r = cls(str(data.get("title", "")), z_max=data.get("z_max", Z_MAX))
        for c in data.get("comparisons", []):
            r.add(c["name"], theory=c["theory"], estimate=c["estimate"], error=c["error"])
        return r
