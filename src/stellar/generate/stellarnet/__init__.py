"""StellarNet, the Stellar paper's baseline generator: SDXL + UNet LoRA + image-to-text mappers.

Modules: :mod:`.config` (configs), :mod:`.mappers` (``ImageToTokenMapper``), :mod:`.encoders`
(masked CLIP features), :mod:`.injection` (placeholder tokens, embedding injection),
:mod:`.pipeline` (``StellarNetPipeline``), :mod:`.method` (``StellarNetMethod`` for
``stellar generate``), :mod:`.data` and :mod:`.train` (``stellar train stellarnet``).
Nothing heavy is imported here: ``diffusers`` / ``transformers`` load with the submodules.
"""
