"""The attack audit: accuracy under adversarial perturbation (:mod:`.audit`), its summary and the
gradient-masking flags derived from its rows (:mod:`.masking`)."""

from .audit import AttackAudit

__all__ = ["AttackAudit"]
