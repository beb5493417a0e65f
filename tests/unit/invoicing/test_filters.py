"""Which of a charge's filters prices an event (Lago's event matching): the most specific match, else the charge."""
from __future__ import annotations

from apps.invoicing.filters import ALL_VALUES, filter_specs, matching_filter

METRIC = [{"key": "region", "values": ["africa", "europe", "us"]}, {"key": "provider", "values": ["aws", "gcp"]}]


def combo(**values) -> tuple:
    return tuple(sorted(values.items()))


def test_lago_documented_filters_price_their_events_and_the_rest_falls_to_the_charge():
    # Lago's "Charges with filters" guide: Africa & AWS, then every region with every provider.
    specs = filter_specs([{"region": ["africa"], "provider": ["aws"]},
                          {"region": [ALL_VALUES], "provider": [ALL_VALUES]}], METRIC)
    assert specs[1] == {"region": frozenset({"africa", "europe", "us"}), "provider": frozenset({"aws", "gcp"})}
    assert matching_filter(combo(region="africa", provider="aws"), specs) == 0  # both match, the first wins the tie
    assert matching_filter(combo(region="africa", provider="gcp"), specs) == 1
    assert matching_filter(combo(region="europe", provider="aws"), specs) == 1
    assert matching_filter(combo(region="africa"), specs) is None  # a key of each filter is missing
    assert matching_filter((), specs) is None


def test_the_filter_matching_more_keys_wins_whatever_its_order():
    specs = filter_specs([{"region": ["us"]}, {"region": ["us", "europe"], "provider": ["aws"]}], METRIC)
    assert matching_filter(combo(region="us", provider="aws"), specs) == 1
    assert matching_filter(combo(region="us", provider="gcp"), specs) == 0
    assert matching_filter(combo(region="europe", provider="gcp"), specs) is None


def test_on_filters_of_the_same_size_the_first_created_wins():
    specs = filter_specs([{"provider": ["aws"]}, {"region": ["us"]}], METRIC)
    assert matching_filter(combo(region="us", provider="aws"), specs) == 0
    assert matching_filter(combo(region="us", provider="gcp"), specs) == 1
