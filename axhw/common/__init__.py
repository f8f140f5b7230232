"""Plumbing every layer may use, and that imports nothing else of axhw: atomic file output
(:mod:`~axhw.common.io`), where files live (:mod:`~axhw.common.paths`), process settings
(:mod:`~axhw.common.runtime`), text tables (:mod:`~axhw.common.tables`) and output-folder checks
(:mod:`~axhw.common.cli_checks`). The layers are drawn in ``docs/architecture.md``.
"""
