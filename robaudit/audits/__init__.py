"""Audits: each measures one aspect of a model on batches of images and returns rows, never printing or
writing files itself (the runner and the report writer do that)."""
