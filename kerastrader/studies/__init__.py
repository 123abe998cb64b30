"""Published studies, reproduced twice: faithfully (their choices, as named options) and
honestly (kerastrader's defaults), side by side on one page built from the runs' files.

``kerastrader study NAME`` runs ``examples/studies/<NAME>/study.toml``: see
:mod:`kerastrader.studies.runner` for the spec, :mod:`kerastrader.studies.accounting` for
the originals' own arithmetic and :mod:`kerastrader.studies.page` for the page.
"""
