"""Representational similarity: how alike a set of images look to a network layer, or to neurons.

A *similarity matrix* over N images holds, for every pair, the cosine similarity of their centred
responses (a layer's activations, or a population of neurons). Two uses share this package:

* the neural-similarity regularizer of Li et al. (2019, "Learning from brains how to regularize machines"),
  which trains a model so that its similarity matrix approaches a target (``robaudit train --regularizer
  similarity:...``, :mod:`robaudit.training.similarity`);
* representational similarity analysis between a model and a target (``robaudit rsa``,
  :mod:`robaudit.audits.rsa`).

Modules: :mod:`.measures` (SNR scaling, centred cosine similarity, the arctanh loss, correlation of upper
triangles, linear CKA), :mod:`.layers` (naming layers and capturing their activations), :mod:`.target`
(the target file format, and a model layer as a target).
"""
