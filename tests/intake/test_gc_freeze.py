"""`long_lived_frozen` (python -m services.intake serve / import): what was loaded before is kept out
of the collector's passes while the server or the import runs, and given back afterwards."""

from __future__ import annotations

import gc

from shared.serving import long_lived_frozen


def test_objects_loaded_before_are_frozen_during_and_released_after() -> None:
    before = gc.get_freeze_count()
    with long_lived_frozen():
        assert gc.get_freeze_count() > before
        made_during = [[] for _ in range(100)]
        cycle: list[object] = []
        cycle.append(cycle)  # garbage made while running is still collected
        del cycle
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0
    assert len(made_during) == 100
