"""What a recipe change does to the data, and what the data is worth.

- sides.py: one side of a comparison, read from a finished build dir, a Hub release (`org/name@vX.Y.Z`)
  or a recipe (its first N curated captions through the real pipeline, as `preview` runs them);
- stats.py: the statistics (bootstrap confidence interval of a mean shift, two-sample KS statistic,
  caption statistics and concept coverage);
- compare.py: two sides compared (rows, scores, funnel, captions, the most changed rows);
  report.py + compare.html.j2: that comparison as byte-stable Markdown, JSON and a self-contained page;
  plots.py: the overlaid score distributions;
- changes.py: the "Changes since vY" section `publish` adds to a release's card;
- evaluate.py + proxy.py: `evaluate --proxy clip`, a small CLIP trained on the data and its zero-shot
  retrieval on a held-out set (worldeval.py: the shapes world's rendered one and its oracle).

This package sits above release/ (it may import every other part of the builder); only cli.py imports it.
"""
