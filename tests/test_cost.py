import warnings

import pytest

from week04_lib.cost import PRICING_CSV, Pricing, cost_usd
from week04_lib.transport import Usage


def test_every_row_has_a_price_source_and_date():
    pricing = Pricing.load()
    assert {"gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "fake-mini", "fake-large"} <= set(pricing.prices)
    for price in pricing.prices.values():
        assert price.input_usd_per_mtok > 0 and price.output_usd_per_mtok >= price.input_usd_per_mtok
        assert price.source and len(price.as_of) == 10


def test_cost_from_usage_object_or_dict():
    assert cost_usd("gpt-4o-mini", Usage(1_000_000, 0)) == pytest.approx(0.15)
    assert cost_usd("gpt-4o-mini", {"prompt_tokens": 1000, "completion_tokens": 2000}) == pytest.approx(0.00135)


def test_dated_names_use_the_longest_prefix():
    pricing = Pricing.load()
    assert pricing.price("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"
    assert pricing.price("gpt-4o-2024-08-06").model == "gpt-4o"
    assert pricing.price("gpt-4omni") is None


def test_unknown_model_costs_none_with_one_warning():
    pricing = Pricing.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pricing.cost_usd("my-local-llama", Usage(10, 10)) is None
        assert pricing.cost_usd("my-local-llama", Usage(10, 10)) is None
    assert len(caught) == 1 and "my-local-llama" in str(caught[0].message)


def test_a_bad_table_says_which_row(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text(PRICING_CSV.read_text().splitlines()[0] + "\nx,cheap,1,src,2025-01-01\n")
    with pytest.raises(ValueError, match="bad pricing row"):
        Pricing.load(bad)
