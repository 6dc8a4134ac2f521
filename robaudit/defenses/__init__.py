"""Defenses: modules that make a classifier more robust, composed into one pixel-space model.

See :mod:`robaudit.defenses.base` for the contract and the composition rules; the built-ins are
``blur`` (:mod:`.blur`), ``pca`` (:mod:`.pca`) and ``cache`` (:mod:`.cache`).
"""
