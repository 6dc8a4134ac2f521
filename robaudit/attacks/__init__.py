"""Attacks: how adversarial examples are made, behind one contract (see :mod:`.base`).

Built-ins: robaudit's own batched PGD (:mod:`.pgd`, per-image budgets) and the foolbox 3 attacks
(:mod:`.foolbox_attacks`), all registered in the ``robaudit.attacks`` entry-point group.
"""
