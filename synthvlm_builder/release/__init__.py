"""Releases: the Hub-layout dataset dir (layout.py names its files), assembled from the selected
candidates (assemble.py: Parquet via `datasets`, card, stats, lock), exported for trainers
(export.py) and published as one commit plus a tag (publish.py)."""
