"""How the close splits its customers into planning chunks (`close_chunks`)."""
import pytest

from apps.invoicing.close.pipeline import close_chunks


def _sizes(count: int, largest: int = 1000, smallest: int = 250) -> list[int]:
    bounds = close_chunks(count, largest=largest, smallest=smallest)
    assert [start for start, _ in bounds] == ([0] + [stop for _, stop in bounds[:-1]] if bounds else [])  # contiguous
    return [stop - start for start, stop in bounds]


def test_a_large_close_ramps_up_from_a_batch_and_down_again_at_the_end():
    sizes = _sizes(10_000)
    assert sizes[:2] == [250, 500] and sizes[-2:] == [500, 250]
    assert sizes[2:-2] == [945] * 4 + [944] * 5
    assert sum(sizes) == 10_000


@pytest.mark.parametrize("count", [0, 1, 7, 999, 1000, 1001, 1499, 1500, 2999, 3000, 3001, 10_000, 123_457])
def test_every_customer_is_in_exactly_one_chunk_of_at_most_the_largest_size(count):
    sizes = _sizes(count)
    assert sum(sizes) == count
    assert all(0 < size <= 1000 for size in sizes)


def test_too_few_customers_for_both_ramps_get_equal_chunks():
    assert _sizes(1500) == [750, 750]
    assert _sizes(800) == [800]


def test_a_batch_as_large_as_a_chunk_means_no_ramp():
    assert _sizes(3000, largest=1000, smallest=1000) == [1000, 1000, 1000]
