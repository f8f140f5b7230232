"""The applications on top of the library: the ``axhw`` command line (:mod:`~axhw.apps.cli`), the demo
(:mod:`~axhw.apps.demo`), the method x hardware accuracy matrix (:mod:`~axhw.apps.experiments`) and the
paper's figures (:mod:`~axhw.apps.figures`). Nothing below imports from here.
"""
