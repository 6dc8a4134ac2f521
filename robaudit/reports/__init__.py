"""Reports: Parquet files in long format (one row per sample x condition) that describe themselves.

:mod:`.writer` streams rows chunk by chunk (resumable, atomic); :mod:`.read` loads a report and its
metadata; :mod:`.stats` holds the interval estimates that summaries use.
"""
