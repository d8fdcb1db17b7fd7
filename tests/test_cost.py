import warnings
from importlib import resources
from pathlib import Path

import pytest

import week04_lib
from week04_lib.cost import PRICING_CSV, Pricing, cost_usd
from week04_lib.transport import Usage


def test_every_row_has_a_price_source_and_date():
    pricing = Pricing.load()
    assert {"gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "fake-mini", "fake-large"} <= set(pricing.prices)
    for price in pricing.prices.values():
        assert price.input_usd_per_mtok > 0
        if "embed" in price.model:  # an embedding writes no tokens
            assert price.output_usd_per_mtok == 0
        else:
            assert price.output_usd_per_mtok >= price.input_usd_per_mtok
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


def test_the_table_is_package_data_and_another_can_be_loaded(tmp_path):
    """Issue 11, item 1: the table ships inside the package (see test_install for a wheel)."""
    packaged = resources.files("week04_lib") / "data" / "pricing.csv"
    assert packaged.is_file() and PRICING_CSV.read_text() == packaged.read_text()
    assert Path(str(PRICING_CSV)).resolve().parent.parent == Path(week04_lib.__file__).resolve().parent
    mine = tmp_path / "mine.csv"
    mine.write_text(PRICING_CSV.read_text().splitlines()[0] + "\nmy-llama,1,2,my invoice,2026-01-01\n")
    for path in (mine, str(mine)):
        assert set(Pricing.load(path).prices) == {"my-llama"}
    assert Pricing.load(mine).cost_usd("my-llama", Usage(1_000_000, 1_000_000)) == pytest.approx(3.0)
