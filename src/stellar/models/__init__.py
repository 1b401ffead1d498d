"""Pretrained backends. Each declares its weights as a model card in :mod:`stellar.models.registry`."""
