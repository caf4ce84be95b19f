"""Self-contained HTML pages: ``report.html`` of a curation run and ``eval.html`` of
``learnsieve eval`` (learnsieve/report/html.py)."""
