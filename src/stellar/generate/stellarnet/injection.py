"""Placeholder tokens and embedding injection into SDXL's two CLIP text encoders.

A prompt template's ``{}`` becomes the subject phrase (default "a S* person"), and S* expands to K
placeholder tokens ``<s*_0> … <s*_{K-1}>`` added to *both* tokenizers, so each one is a single
token. When a prompt is encoded, the token-embedding layer's output at the position of ``<s*_k>``
is replaced by the k-th mapper embedding (a forward hook on the embedding layer); everything else
(positional embeddings, attention, the frozen encoder) is untouched, and the gradient flows from
the encoder outputs back into the mapper.

Why the ids fed to the encoder are not the placeholder ids: the new tokens get ids above
``<|endoftext|>``, and CLIP text models with the legacy ``eos_token_id == 2`` config (SDXL's)
pool at ``argmax(input_ids)`` — that would pool at a placeholder instead of the end token. The
encoder therefore sees the BOS id at those positions (never the max, never EOS), and the hook
writes the injected embeddings there; the embedding table is never resized, so the base text
encoders stay byte-identical to the released weights.

Prompt embeddings follow diffusers' SDXL ``encode_prompt``: the penultimate hidden state of each
encoder, concatenated on the feature axis, and the pooled (projected) output of the second.
"""

from __future__ import annotations

from typing import Sequence

import torch

from stellar.data import layout


def placeholder_tokens(num_tokens: int) -> tuple[str, ...]:
    """``("<s*_0>", …, "<s*_{K-1}>")``."""
    return tuple(f"<s*_{i}>" for i in range(num_tokens))


def subject_text(phrase: str, num_tokens: int) -> str:
    """``"a S* person"`` -> ``"a <s*_0> <s*_1> … person"``."""
    return phrase.replace("S*", " ".join(placeholder_tokens(num_tokens)), 1)


def fill_template(template: str, phrase: str, num_tokens: int) -> str:
    """Put the expanded subject phrase in place of the template's ``{}`` (a template without ``{}`` gets
    the phrase prepended, so the subject is always present)."""
    text = subject_text(phrase, num_tokens)
    if layout.PLACEHOLDER not in template:
        return f"{text}, {template}"
    return layout.fill_prompt(template, text)


def add_placeholder_tokens(tokenizer, num_tokens: int) -> list[int]:
    """Add the K placeholder tokens to ``tokenizer`` (idempotent) and return their ids, in order."""
    tokens = placeholder_tokens(num_tokens)
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    if len(set(ids)) != num_tokens or any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise RuntimeError(f"placeholder tokens were not added as single tokens: {dict(zip(tokens, ids))}")
    return list(ids)


def tokenize(tokenizer, texts: Sequence[str], placeholder_ids: Sequence[int]) -> torch.Tensor:
    """Token ids (B, max_length), padded and truncated as SDXL does.

    Raises:
        ValueError: a prompt does not contain every placeholder exactly once after truncation
            (the prompt is too long for CLIP's 77 tokens, or has no subject).
    """
    ids = tokenizer(
        list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    want = torch.tensor(list(placeholder_ids))
    counts = (ids[..., None] == want).sum(dim=1)  # (B, K)
    for text, row in zip(texts, counts):
        if not bool((row == 1).all()):
            raise ValueError(
                f"prompt {text!r}: the subject placeholders did not survive tokenization once each "
                f"(counts {row.tolist()}); shorten the prompt to fit {tokenizer.model_max_length} tokens"
            )
    return ids


def inject(token_embeds: torch.Tensor, input_ids: torch.Tensor, placeholder_ids: Sequence[int], embeddings: torch.Tensor) -> torch.Tensor:
    """Token embeddings (B, T, D) with position t replaced by ``embeddings[b, k]`` where ``input_ids[b, t]``
    is placeholder k; every other position is returned unchanged (exact copy)."""
    want = torch.tensor(list(placeholder_ids), device=input_ids.device)
    hit = input_ids[..., None] == want  # (B, T, K)
    is_placeholder = hit.any(-1)
    k = hit.to(torch.int64).argmax(-1)  # (B, T); meaningful only where is_placeholder
    gathered = embeddings.to(token_embeds.dtype).gather(1, k[..., None].expand(-1, -1, token_embeds.shape[-1]))
    return torch.where(is_placeholder[..., None], gathered, token_embeds)


def encode_with_injection(
    text_encoder, input_ids: torch.Tensor, placeholder_ids: Sequence[int], embeddings: torch.Tensor, safe_id: int
):
    """Run ``text_encoder`` on ``input_ids`` with the placeholders' token embeddings set to ``embeddings``
    (B, K, D). Returns the encoder output (with ``hidden_states``)."""
    device = next(text_encoder.parameters()).device
    input_ids = input_ids.to(device)
    want = torch.tensor(list(placeholder_ids), device=device)
    safe_ids = input_ids.masked_fill(torch.isin(input_ids, want), int(safe_id))

    def hook(module, args, output):
        return inject(output, input_ids, placeholder_ids, embeddings.to(output.device))

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        return text_encoder(safe_ids, output_hidden_states=True)
    finally:
        handle.remove()


def encode_prompts(
    tokenizers: Sequence,
    text_encoders: Sequence,
    placeholder_ids: Sequence[Sequence[int]],
    texts: Sequence[str],
    embeddings: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL ``(prompt_embeds (B, T, D1+D2), pooled_prompt_embeds (B, P))`` of the filled ``texts``, with the
    mapper ``embeddings[i]`` (B, K, D_i) injected into encoder i."""
    hidden, pooled = [], None
    for tokenizer, encoder, ids_k, emb in zip(tokenizers, text_encoders, placeholder_ids, embeddings):
        ids = tokenize(tokenizer, texts, ids_k)
        safe = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0
        out = encode_with_injection(encoder, ids, ids_k, emb, safe)
        pooled = out[0]  # the last encoder's projected pooled output (diffusers' SDXL convention)
        hidden.append(out.hidden_states[-2])
    return torch.cat(hidden, dim=-1), pooled
