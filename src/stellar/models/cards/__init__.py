"""Model card data files (one JSON per card; format: docs/model-cards.md). Read by stellar.models.registry."""
