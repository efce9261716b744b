"""stockml.signals.FeatureCache: a warm instance computes a history's features once, and what it
keeps is exactly what computing afresh gives; a new as_of (a new history version) is computed."""

import numpy as np
import pytest

from stockml import signals
from stockml.features import build_features, frame_from_bars
from stockpred.market.market_data import History
from stockpred.market.sample_data import available, load_series

pytestmark = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")


@pytest.fixture
def computed(monkeypatch):
    """The histories whose features were computed (not read from a cache), in order."""
    calls = []
    compute = signals.latest_bar

    def counting(bars):
        calls.append(bars[-1].date)
        return compute(bars)
    monkeypatch.setattr(signals, "latest_bar", counting)
    return calls


def spx(days, version):
    return History("SPX", "sample", list(load_series("SPX")[:days]), version)


def test_a_cached_row_is_the_row_computed_afresh_and_is_computed_once(computed):
    cache = signals.FeatureCache()
    history = spx(1200, "v1")
    first, again = cache.latest(history), cache.latest(spx(1200, "v1"))
    assert computed == [history.bars[-1].date]
    assert again is first
    fresh = build_features(frame_from_bars(history.bars))[-1]
    assert first.as_of == history.bars[-1].date and first.last_close == history.bars[-1].close
    assert np.array_equal(first.features[0], fresh) and not np.isnan(fresh).any()
    with pytest.raises(ValueError):
        first.features[0, 0] = 0.0


def test_a_new_as_of_is_a_new_version_and_is_computed(computed):
    cache = signals.FeatureCache()
    today, tomorrow = spx(1200, "v1"), spx(1201, "v2")
    before, after = cache.latest(today), cache.latest(tomorrow)
    assert computed == [today.bars[-1].date, tomorrow.bars[-1].date]
    assert after.as_of == tomorrow.bars[-1].date > before.as_of
    assert np.array_equal(after.features[0], build_features(frame_from_bars(tomorrow.bars))[-1])
    assert not np.array_equal(after.features, before.features)


def test_a_history_without_a_version_is_computed_every_time(computed):
    cache = signals.FeatureCache()
    history = spx(1200, None)
    first, again = cache.latest(history), cache.latest(history)
    assert again is not first and np.array_equal(again.features, first.features)
    assert len(computed) == 2


def test_the_cache_keeps_its_most_recently_used_histories(computed):
    cache = signals.FeatureCache(size=2)
    a, b, c = spx(1200, "a"), spx(1201, "b"), spx(1202, "c")
    for history in (a, b, a, c, a, b):
        cache.latest(history)
    # b was the least recently used when c arrived, so only b is computed twice.
    assert computed == [a.bars[-1].date, b.bars[-1].date, c.bars[-1].date, b.bars[-1].date]


def test_too_short_a_history_is_not_enough_even_through_the_cache():
    with pytest.raises(signals.NotEnoughHistory):
        signals.FeatureCache().latest(spx(40, "short"))
