"""The corruptions audit: the audit itself (:mod:`.audit`), its summary with CE and mCE (:mod:`.summary`), and
what its report means — metrics, tables, figures (:mod:`.report`)."""

from .audit import CorruptionsAudit

__all__ = ["CorruptionsAudit"]
