"""Prefixing continuous prompts to a causal LM's input, in training and behind ``model.forward``.

The clean form of recipe.md section 4: ``inputs_embeds = concat(prompt, embed(tokens))``, the attention
mask extended by l positions, position ids shifted, and the logits of the prompt positions dropped, so
callers see logits aligned with their ``input_ids``.

Rows without a retrieved prompt get l *masked* leading positions (left-padding style) and unshifted
position ids: their tokens attend to exactly what they would without the prefix, at the same
positions, so their output equals the base model's up to float tolerance.

:class:`PromptInjector` installs this behind the model's ordinary ``forward`` so that teacher-forced
evaluation and ``model.generate`` (with a KV cache) work unchanged: retrieval happens at prefill only;
each decoding step then prepends the remembered prefix mask to the caller's attention mask and shifts
the position ids of the rows that got a prompt. What a prefill decided is remembered per KV cache
object (weakly, so finished generations free it).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from dataclasses import dataclass
from typing import Callable

import torch

from wiseedit.models.kv_cache import cached_length, call_cache, output_cache

#: ``retrieve(input_ids (B, T), query_mask (B, T) bool) -> (prompts (B, l, d), hit (B,) bool)``
Retriever = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def prepend_prompts(embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                    prompts: torch.Tensor, hit: torch.Tensor):
    """Prefix `prompts` (B, l, d) to `embeds` (B, T, d) in the rows where `hit` (B,) is true.

    Returns ``(embeds (B, l+T, d), attention_mask (B, l+T), position_ids (B, l+T))``. In a hit row the
    prompt takes the positions just before its first real token's and the tokens move up by l; in other
    rows the l new positions are masked out and nothing else changes.
    """
    B, T = attention_mask.shape
    l = prompts.shape[1]
    hit = hit.bool()
    real = attention_mask.bool()  # (B, T)
    # the first real token's position per row (rows with no real token: 0)
    first = position_ids.masked_fill(~real, torch.iinfo(position_ids.dtype).max).amin(dim=1)  # (B,)
    first = torch.where(real.any(dim=1), first, torch.zeros_like(first))
    steps = torch.arange(l, device=position_ids.device)
    prefix_positions = torch.where(hit[:, None], first[:, None] + steps, torch.zeros_like(steps))  # (B, l)
    shifted = position_ids + (hit.long() * l)[:, None]  # (B, T)
    # where() rather than a product: a masked row must hold exact zeros whatever its prompt holds
    prompts = torch.where(hit[:, None, None], prompts.to(embeds.dtype), torch.zeros((), dtype=embeds.dtype,
                                                                                      device=embeds.device))
    prefix_mask = hit[:, None].expand(B, l).to(attention_mask.dtype)  # (B, l)
    return (torch.cat([prompts, embeds], dim=1), torch.cat([prefix_mask, attention_mask], dim=1),
            torch.cat([prefix_positions, shifted], dim=1))


def prompted_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    prompts: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of `model` on right-padded `input_ids` (B, T) with every row's `prompts`
    (B, l, d) prefixed; gradients flow into `prompts` (training)."""
    B, T = input_ids.shape
    positions = torch.arange(T, device=input_ids.device).expand(B, T)
    embeds = model.get_input_embeddings()(input_ids)  # (B, T, d)
    hit = torch.ones(B, dtype=torch.bool, device=input_ids.device)
    embeds, mask, positions = prepend_prompts(embeds, attention_mask, positions, prompts, hit)
    out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
    return out.logits[:, -T:]  # (B, T, V): drop the prompt positions


@dataclass
class _Session:
    """What a prefill decided, kept for the decoding steps that continue its KV cache."""

    prefix_mask: torch.Tensor  # (B, l) 1 where the row got a prompt
    shift: torch.Tensor  # (B,) l where the row got a prompt, else 0


class PromptInjector:
    """Wraps ``model.forward`` so every forward pass prefixes the prompts that `retrieve` picks.

    ``query_mask()`` gives the caller's restriction of the retrieval to some tokens (B, T), or None for
    all non-padding tokens; a mask of the caller's batch also fits ``generate``'s expanded batch (beams,
    several return sequences), whose rows repeat each input row in place. Beams of one input share its
    retrieval, so reordering beams never mixes up what a row was prefixed with.

    Inputs given as ``inputs_embeds`` (no token ids to read) run unchanged, as do continuations of a KV
    cache this injector did not fill. 4D attention masks (static caches) are not supported.
    """

    def __init__(self, model, retrieve: Retriever, prompt_tokens: int,
                 query_mask: Callable[[], torch.Tensor | None] = lambda: None):
        self.model = model
        self.retrieve = retrieve
        self.prompt_tokens = prompt_tokens
        self.query_mask = query_mask
        self._sessions: "weakref.WeakKeyDictionary[object, _Session]" = weakref.WeakKeyDictionary()
        self._wrapper = None

    def attach(self) -> None:
        """Install the wrapper as the model instance's ``forward`` (the class stays untouched)."""
        if self._wrapper is not None:
            return
        original = self.model.forward
        names = [p.name for p in inspect.signature(original).parameters.values()
                 if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]

        # wraps() keeps the original signature visible, which generate() inspects (position_ids, ...)
        @functools.wraps(original)
        def forward(*args, **kwargs):
            kwargs.update(zip(names, args))
            return self._forward(original, kwargs)

        self.model.forward = self._wrapper = forward

    def detach(self) -> None:
        """Remove the wrapper: the model's forward is its class's again."""
        if self._wrapper is None:
            return
        if self.model.__dict__.get("forward") is not self._wrapper:
            raise RuntimeError("model.forward was replaced after RECIPE attached; remove that wrapper first")
        del self.model.forward
        self._wrapper = None
        self._sessions.clear()

    def _forward(self, original, kw: dict):
        input_ids, cache = kw.get("input_ids"), call_cache(kw)
        if input_ids is None or kw.get("inputs_embeds") is not None:
            return original(**kw)
        past = cached_length(cache)
        if past == 0:  # prefill: retrieve
            if cache is not None:  # a reused (reset) cache must not continue an older session
                self._sessions.pop(cache, None)
            session, prompts = self._prefill(input_ids, kw.get("attention_mask"))
        else:  # decoding: continue what the prefill of this cache decided
            session, prompts = self._sessions.get(cache), None
        if session is None:  # nothing retrieved: the base model, exactly
            return original(**kw)
        B, T = input_ids.shape
        l = self.prompt_tokens
        caller_past = past - l if past else 0  # the cache holds the l prefix slots besides the caller's
        mask = kw.get("attention_mask")
        if mask is None:  # generate() drops an all-ones mask
            mask = torch.ones(B, caller_past + T, dtype=torch.long, device=input_ids.device)
        if mask.ndim != 2:
            raise ValueError("RECIPE needs a 2D attention mask (static caches and 4D masks are not supported)")
        positions = kw.get("position_ids")
        if positions is None:  # the base model's default
            positions = (caller_past + torch.arange(T, device=input_ids.device)).expand(B, T)
        embeds = self.model.get_input_embeddings()(input_ids)  # (B, T, d)
        if prompts is not None:
            embeds, mask, positions = prepend_prompts(embeds, mask, positions, prompts, session.shift > 0)
            if kw.get("labels") is not None:  # the prompt positions are never scored
                kw["labels"] = torch.cat([kw["labels"].new_full((B, l), -100), kw["labels"]], dim=1)
        else:
            mask = torch.cat([session.prefix_mask.to(mask), mask], dim=1)
            positions = positions + session.shift[:, None]
        wants_tuple = kw.get("return_dict") is False
        kw.update(input_ids=None, inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                  return_dict=True)
        out = original(**kw)
        if prompts is not None:
            self._remember(out, session)
            if out.logits.shape[1] > T:  # drop the prompt positions' logits (logits_to_keep may cut earlier)
                out.logits = out.logits[:, -T:]
            if getattr(out, "hidden_states", None) is not None:
                out.hidden_states = tuple(h[:, -T:] for h in out.hidden_states)
        return out.to_tuple() if wants_tuple else out

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """Retrieve for each row; returns ``(session, prompts)``, or ``(None, None)`` if no row hits."""
        B, T = input_ids.shape
        real = (attention_mask.bool() if attention_mask is not None
                else torch.ones(B, T, dtype=torch.bool, device=input_ids.device))
        query = self.query_mask()
        if query is not None:
            if query.shape[1] == T and query.shape[0] < B and B % query.shape[0] == 0:
                # generate() with beams or several return sequences repeats each row in place
                query = query.repeat_interleave(B // query.shape[0], dim=0)
            if tuple(query.shape) != (B, T):
                raise ValueError(f"query_tokens mask {tuple(query.shape)} does not match the input {(B, T)}")
            real = real & query.to(real.device).bool()
        prompts, hit = self.retrieve(input_ids, real)  # (B, l, d), (B,)
        if not bool(hit.any()):
            return None, None
        shift = hit.long().to(input_ids.device) * self.prompt_tokens  # (B,)
        session = _Session(prefix_mask=(shift[:, None] > 0).long().expand(B, self.prompt_tokens), shift=shift)
        return session, prompts.to(input_ids.device)

    def _remember(self, out, session: _Session) -> None:
        cache = output_cache(out)
        if cache is not None:
            try:
                self._sessions[cache] = session
            except TypeError:  # a cache type that cannot be weakly referenced: no continuation
                pass
