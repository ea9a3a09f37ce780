"""Tests of sft.workflow.report: z-scores, pass/fail at Z_MAX, the AssertionError, the table, the dict round trip."""
import doctest
import json
import math

import numpy as np
import pytest

from sft.workflow import report as rp
from sft.conventions import Z_MAX
from sft.workflow import Comparison, Report


def test_doctests_run():
    assert doctest.testmod(rp).failed == 0


def test_z_and_threshold():
    c = Comparison("a", theory=2.0, estimate=2.5, error=0.25)
    assert c.z == pytest.approx(2.0, rel=1e-15) and c.passed
    below = Comparison("b", theory=0.0, estimate=np.nextafter(Z_MAX, 0), error=1.0)
    at = Comparison("c", theory=0.0, estimate=-Z_MAX, error=1.0)
    assert below.passed and not at.passed  # |z| < Z_MAX passes, |z| = Z_MAX fails
    assert Comparison("d", theory=0.0, estimate=3.0, error=1.0, z_max=2.5).passed is False


def test_numpy_scalars_are_accepted_and_stored_as_float():
    c = Comparison("v", theory=np.float64(1.0), estimate=np.array(1.1), error=np.float32(0.1))
    assert all(type(v) is float for v in (c.theory, c.estimate, c.error))


def test_assert_all_pass_lists_every_failure():
    r = Report("demo")
    r.add("good", theory=1.0, estimate=1.01, error=0.01)
    r.add("high", theory=1.0, estimate=1.5, error=0.1)
    r.add("low", theory=0.0, estimate=-9.0, error=1.0)
    assert not r.passed and [c.name for c in r.failures] == ["high", "low"]
    with pytest.raises(AssertionError, match=r"2 of 3 comparisons fail") as info:
        r.assert_all_pass()
    msg = str(info.value)
    assert "high" in msg and "low" in msg and "good" not in msg and "z = +5.00" in msg
    ok = Report("fine")
    ok.add("x", theory=1.0, estimate=1.0, error=1.0)
    ok.assert_all_pass()
    assert ok.passed


def test_empty_report_does_not_pass():
    with pytest.raises(AssertionError, match="no comparisons"):
        Report("nothing").assert_all_pass()
    assert not Report().passed


def test_table_is_aligned():
    """Every cell lies within its column of dashes; numbers end at the column's right edge."""
    import re
    r = Report("t")
    r.add("short", theory=1.0, estimate=1.2345678, error=0.001)
    r.add("a much longer name", theory=-123456.0, estimate=-123450.0, error=10.0)
    lines = str(r).splitlines()
    assert lines[0] == "t  (pass: |z| < 4)" and repr(r) == str(r) and len(lines) == 5
    spans = [m.span() for m in re.finditer("-+", lines[2])]
    assert len(spans) == 6
    want = [["quantity", "theory", "simulation", "error", "z", "pass"],
            ["short", "1", "1.23457", "0.001", "+234.57", "FAIL"],
            ["a much longer name", "-123456", "-123450", "10", "+0.60", "ok"]]
    for line, cells in zip([lines[1], lines[3], lines[4]], want):
        padded = line.ljust(spans[-1][1])
        assert [padded[a:b].strip() for a, b in spans] == cells
        assert "".join(padded[b:a] for (_, b), (a, _) in zip(spans, spans[1:])).strip() == ""
        for k in (1, 2, 3, 4):  # right-aligned numbers
            assert padded[spans[k][1] - 1] != " "


def test_to_dict_is_json_and_round_trips():
    r = Report("cache me", z_max=3.0)
    r.add("k", theory=0.5, estimate=0.55, error=0.01)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["comparisons"][0]["z"] == pytest.approx(5.0, rel=1e-12)
    assert d["comparisons"][0]["passed"] is False and d["z_max"] == 3.0
    back = Report.from_dict(d)
    assert back.to_dict() == r.to_dict() and str(back) == str(r)


@pytest.mark.parametrize("kwargs, match", [
    (dict(theory=1.0, estimate=1.0, error=0.0), "error=0.0"),
    (dict(theory=1.0, estimate=1.0, error=-1.0), "error=-1.0"),
    (dict(theory=1.0, estimate=math.nan, error=1.0), "estimate=nan"),
    (dict(theory=[1.0, 2.0], estimate=1.0, error=1.0), "theory="),
    (dict(theory=1.0, estimate=1.0, error=1.0, z_max=0.0), "z_max=0.0"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Comparison("q", **kwargs)


def test_bad_report_threshold():
    with pytest.raises(ValueError, match="z_max=-1"):
        Report("r", z_max=-1)
