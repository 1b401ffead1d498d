"""Evaluation runs: batching, feature cache, results store, resume, sharding (DESIGN §7)."""

from stellar.engine.evaluate import EvalConfig, evaluate, finalize_run

__all__ = ["EvalConfig", "evaluate", "finalize_run"]
