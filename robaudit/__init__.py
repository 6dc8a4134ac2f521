"""robaudit: audit how robust an image classifier is, and make it more robust.

Every model is a module that takes pixels in [0, 1] and returns logits; audits yield per-sample rows; one
writer turns them into self-describing Parquet reports. Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
