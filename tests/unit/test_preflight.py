"""The batch estimate as an operator reads it: numbers written the way people write them."""

from __future__ import annotations

import pytest

from vidgo_stems.batch.preflight import Estimate, number
from vidgo_stems.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (0, "0"),
        (7, "7"),
        (2_000_000, "2,000,000"),
        (2_000_000.0, "2,000,000"),
        (1e21, "1,000,000,000,000,000,000,000"),
        (1234.5, "1,234.5"),
        (0.25, "0.25"),
        (2.5e6, "2,500,000"),
    ],
)
def test_number_is_written_with_thousands_separators_and_never_in_exponent_form(value, written):
    assert number(value) == written


def test_estimate_of_a_large_batch_reads_as_people_write_it():
    line = Estimate(new_tasks=1_000_000, credits_per_task=2.0, balance=3_500_000).describe()
    assert line.startswith(
        "estimate: 1,000,000 new Vidgo tasks x 2 credits = 2,000,000 credits at least "
    )
    assert line.endswith("balance: 3,500,000")
    assert "e+" not in line
    one = Estimate(new_tasks=1, credits_per_task=0.5, balance=None).describe()
    assert one.startswith("estimate: 1 new Vidgo task x 0.5 credits = 0.5 credits at least ")


def test_a_balance_short_of_the_estimate_names_both_as_people_write_them():
    with pytest.raises(ConfigError, match=r"balance \(1,999,999 credits\).*\(2,000,000\)"):
        Estimate(1_000_000, 2.0, 1_999_999).check(ignore_balance=False)
