"""Stellar-Bench: systematic evaluation of human-centric personalized text-to-image methods.

Implements the system of *Stellar: Systematic Evaluation of Human-Centric Personalized
Text-to-Image Methods* (Achlioptas et al., arXiv 2312.06116) from its specification: the Stellar
dataset, its metrics, an evaluation engine, reports and the StellarNet baseline. See the README and
``DESIGN.md`` for the architecture.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
