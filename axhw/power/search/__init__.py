"""The minimum-power search (paper section 5, Fig. 9): the candidate grid (:mod:`~axhw.power.search.grid`),
networks trained per target (:mod:`~axhw.power.search.targets`), cached measurements
(:mod:`~axhw.power.search.measure`), ApproxAnn's power (:mod:`~axhw.power.search.approxann`), the study per data
set (:mod:`~axhw.power.search.study`) and its ``power.json`` (:mod:`~axhw.power.search.aggregate`), the study of a
user's own checkpoints (:mod:`~axhw.power.search.networks`), and the reports
(:mod:`~axhw.power.search.report`, :mod:`~axhw.power.search.per_target`).
"""

from typing import Any


def __getattr__(name: str) -> Any:  # the names of the module this package replaced (axhw.power.search)
    from axhw._compat import moved_attribute

    return moved_attribute(__name__, name, "axhw.power.search.grid")
