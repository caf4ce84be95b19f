"""open_clip's own trainer with online selection on learnsieve's shards.

    python -m learnsieve.online.open_clip_train --online-ratio 2 [--online-proxy learner|ARCH[:PATH]]
        [--online-method topk|gumbel] [--online-temperature T] [--online-seed S]
        [--online-bank-refresh N] [--online-counters FILE.json] \\
        --train-data 'cached/{00000..00099}.tar' --dataset-type webdataset --model ViT-B-32 \\
        --batch-size 1024 ...   # every other flag is open_clip_train.main's, unchanged

``--batch-size`` is the **super-batch** open_clip's loader draws (uniformly, as it always
does); each step the learner is trained on the ``batch-size / online-ratio`` of it with the
highest learnability = proxy loss - cached reference loss (``KEY.json``'s
``learnsieve.scores.ref_loss``: curate the pool with ``--set select.mode=all`` first;
docs/ONLINE.md). open_clip's loop, loss, optimizer, scheduler, precision, logging and
checkpoints run unchanged (``open_clip_train.main.main``); this module changes two things
around them, without copying any of their code:

1. **data**: in ``open_clip_train.data`` (only there), webdataset's ``to_tuple("image",
   "text")`` is replaced by a stage that appends each sample's cached reference loss to its
   token row as one extra int64 column (the float64's bits; NaN when absent), so it survives
   worker processes, pinning and ``.to(device)`` like any token tensor;
2. **model**: the model ``create_model_and_transforms`` returns is wrapped in
   ``OnlineSelection`` (the wrapped model is ``.module``, as under DDP, so open_clip's
   ``unwrap_model``, checkpoints (``module.``-prefixed keys, which open_clip and learnsieve
   strip when loading), ``--resume`` and zero-shot evaluation see the real model). In training
   mode its forward strips the column, scores the super-batch with the proxy under no_grad,
   keeps the selected rows, and runs the real forward on them only: the loss and the backward
   pass are open_clip's, on the selected batch.

The proxy's per-example loss is the image-to-text InfoNCE of each caption against the fixed
bank of 1000 ImageNet prompts (``models.open_clip_adapter``'s bank, exactly what
``open_clip:ARCH:PATH`` references are scored with), the bank re-encoded by the proxy every
``--online-bank-refresh`` steps (its text tower moves). ``--online-proxy learner`` scores with
the learner itself; ``--online-proxy ARCH[:PATH]`` with a small open_clip model of its own
(same tokenizer and image preprocessing as the learner's), trained alongside on every selected
batch with in-batch CLIP loss and AdamW (``--online-lr``). Counters (steps, examples scored and
selected, mean learnability of the picked vs the super-batch) go to ``--online-counters``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from learnsieve.online.cached import NAMESPACE, REF_LOSS
from learnsieve.online.selector import METHODS, OnlineSelector

log = logging.getLogger(__name__)


def pack_reference(tokens: torch.Tensor, ref_loss: float) -> torch.Tensor:
    """A token row [ctx] + the reference loss as one more int64 (its float64 bits)."""
    bits = torch.tensor([ref_loss], dtype=torch.float64).view(torch.int64)
    return torch.cat([tokens.to(torch.int64), bits])


def unpack_reference(text: torch.Tensor):
    """[B, ctx+1] -> (tokens [B, ctx], reference losses float64 [B])."""
    return text[:, :-1], text[:, -1].contiguous().view(torch.float64)


def sample_reference_loss(sample: dict) -> float:
    """The cached reference loss in a webdataset sample's decoded ``json`` (NaN when absent)."""
    meta = sample.get("json")
    if isinstance(meta, (bytes, str)):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None
    try:
        return float(meta[NAMESPACE]["scores"][REF_LOSS])
    except (TypeError, KeyError, ValueError):
        return math.nan


class _WdsWithReference:
    """``webdataset`` as ``open_clip_train.data`` sees it, except ``to_tuple("image", "text")``."""

    def __init__(self, wds):
        self._wds = wds

    def __getattr__(self, name):
        return getattr(self._wds, name)

    def to_tuple(self, *keys, **kw):
        if keys != ("image", "text"):
            return self._wds.to_tuple(*keys, **kw)
        return self._wds.map(lambda s: (s["image"], pack_reference(s["text"], sample_reference_loss(s))))


class PromptBankLoss:
    """Image-to-text InfoNCE of each pair against the 1000 ImageNet prompts, encoded by ``model``
    and re-encoded every ``refresh`` calls; prompts whose tokens equal the caption's are masked."""

    def __init__(self, tokenizer, refresh: int = 50, size: int = 1000):
        from learnsieve.models.open_clip_adapter import bank_captions
        captions = bank_captions()
        step = max(1, len(captions) // max(1, size))  # a smaller bank: every step-th prompt
        self.tokens = tokenizer(captions[::step][:size])
        self.refresh, self.calls, self.refreshes = max(1, refresh), 0, 0
        self._emb, self._for = None, None

    @torch.no_grad()
    def bank(self, model: nn.Module, device) -> torch.Tensor:
        if self._emb is None or self._for is not model or self.calls % self.refresh == 0:
            import types

            from learnsieve.models.open_clip_adapter import OpenClipScorer
            toks = self.tokens.to(device)
            # the adapter's exact prefix encoding (a causal text tower on the prompts' length)
            prefix = types.SimpleNamespace(model=model)
            self._emb = torch.cat([F.normalize(OpenClipScorer._encode_prefix(prefix, toks[i:i + 250]).float(), dim=-1)
                                   for i in range(0, len(toks), 250)])
            self._for = model
            self.refreshes += 1
        self.calls += 1
        return self._emb

    @torch.no_grad()
    def __call__(self, model: nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            bank = self.bank(model, images.device)
            img = F.normalize(model.encode_image(images).float(), dim=-1)
            txt = F.normalize(model.encode_text(tokens).float(), dim=-1)
            scale = model.logit_scale.exp().clamp(max=100.0).float()
            neg = scale * img @ bank.T
            same = (tokens[:, None, :] == self.tokens.to(tokens.device)[None, :, :tokens.shape[1]]).all(-1)
            neg = neg.masked_fill(same, -1e4)
            pos = scale * (img * txt).sum(-1)
            loss = torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1) - pos
        finally:
            model.train(was)
        return loss.double().cpu()


class OnlineSelection(nn.Module):
    """An open_clip model that, in training mode, trains only on the rows it selects."""

    def __init__(self, module: nn.Module, selector: OnlineSelector, ratio: float, loss: PromptBankLoss,
                 context_length: int, online_model: Optional[nn.Module] = None, online_lr: float = 1e-4):
        super().__init__()
        self.module = module
        self.selector, self.ratio, self.bank_loss, self.context_length = selector, ratio, loss, context_length
        # the online model is outside the module tree: not in open_clip's optimizer or checkpoints
        object.__setattr__(self, "_online", online_model)
        self._online_opt = (torch.optim.AdamW(online_model.parameters(), lr=online_lr, weight_decay=0.1)
                            if online_model is not None else None)
        self.sum_learnability_all = self.sum_learnability_selected = 0.0

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if not any(k.startswith("module.") for k in state_dict):  # a plain model's (open_clip strips module.)
            return self.module.load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, image: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None):
        ref = None
        if text is not None and text.shape[-1] == self.context_length + 1:
            text, ref = unpack_reference(text)
        if self.training and ref is not None and image is not None:
            image, text = self.select(image, text, ref)
        return self.module(image, text)

    def select(self, image: torch.Tensor, text: torch.Tensor, ref: torch.Tensor):
        n = image.shape[0]
        keep = max(1, int(round(n / self.ratio)))
        self.selector.batch_size = keep
        online = self._online
        proxy = self.module if online is None else online
        if online is not None:
            online.to(image.device)
        proxy_loss = self.bank_loss(proxy, image, text)
        idx = self.selector.select(proxy_loss, ref.cpu())
        learn = proxy_loss - ref.cpu()
        finite = ~torch.isnan(learn)
        self.sum_learnability_all += float(learn[finite].sum())
        self.sum_learnability_selected += float(torch.nan_to_num(learn[idx]).sum())
        idx = idx.to(image.device)
        image, text = image[idx], text[idx]
        if online is not None:
            self._update_online(online, image, text)
        return image, text

    def _update_online(self, online: nn.Module, image: torch.Tensor, text: torch.Tensor) -> None:
        from learnsieve.models.train import clip_loss
        online.train()
        img = F.normalize(online.encode_image(image).float(), dim=-1)
        txt = F.normalize(online.encode_text(text).float(), dim=-1)
        loss = clip_loss(img, txt, online.logit_scale.exp().clamp(max=100.0))
        self._online_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._online_opt.step()
        with torch.no_grad():
            online.logit_scale.clamp_(0, math.log(100))
        self.selector.counters.online_model_train_examples += int(image.shape[0])

    def counters(self) -> dict:
        c = self.selector.counters.as_dict()
        c.update(bank_refreshes=getattr(self.bank_loss, "refreshes", 0), ratio=self.ratio,
                 proxy="learner" if self._online is None else "online_model",
                 mean_learnability_all=self.sum_learnability_all / max(1, c["scored"] - c["missing_reference"]),
                 mean_learnability_selected=self.sum_learnability_selected / max(1, c["selected"]))
        return c


def online_parser() -> argparse.ArgumentParser:
    """The entry point's own flags (``--online-*``); every other flag is open_clip's."""
    ap = argparse.ArgumentParser(prog="python -m learnsieve.online.open_clip_train", add_help=False,
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--online-ratio", type=float, default=2.0, help="super-batch / trained batch (>= 1)")
    ap.add_argument("--online-proxy", default="learner", help="learner, or ARCH[:PATH] of a small open_clip model")
    ap.add_argument("--online-method", default="topk", choices=METHODS)
    ap.add_argument("--online-temperature", type=float, default=1.0)
    ap.add_argument("--online-seed", type=int, default=0)
    ap.add_argument("--online-lr", type=float, default=1e-4, help="the small online model's learning rate")
    ap.add_argument("--online-bank-refresh", type=int, default=50, help="steps between re-encodings of the "
                    "prompt bank by the proxy")
    ap.add_argument("--online-bank-size", type=int, default=1000, help="prompts in the bank (1000: the "
                    "whole bank open_clip references are scored with)")
    ap.add_argument("--online-counters", help="write the selection counters here (JSON) at the end")
    ap.add_argument("--online-help", action="help")
    return ap


def parse_online(argv: List[str]):
    ap = online_parser()
    ns, rest = ap.parse_known_args(argv)
    if ns.online_ratio < 1:
        ap.error(f"--online-ratio must be >= 1, not {ns.online_ratio}")
    return ns, rest


def main(argv: Optional[List[str]] = None) -> int:
    try:
        import open_clip
        import open_clip_train.data as oc_data
        import open_clip_train.main as oc_main
    except ImportError:
        sys.exit("learnsieve.online.open_clip_train needs open_clip's trainer: pip install 'open-clip-torch[training]'")
    ns, rest = parse_online(list(sys.argv[1:] if argv is None else argv))
    wrapped: list = []
    create = oc_main.create_model_and_transforms

    def create_and_wrap(model_name, *a, **kw):
        model, pre_train, pre_val = create(model_name, *a, **kw)
        tokenizer = open_clip.get_tokenizer(model_name)
        ctx = int(getattr(tokenizer, "context_length", 77))
        online = None
        if ns.online_proxy != "learner":
            arch, _, path = ns.online_proxy.partition(":")
            torch.manual_seed(ns.online_seed)
            online = open_clip.create_model(arch, pretrained=path or None)
        selector = OnlineSelector(1, method=ns.online_method, temperature=ns.online_temperature, seed=ns.online_seed)
        model = OnlineSelection(model, selector, ns.online_ratio, PromptBankLoss(tokenizer, ns.online_bank_refresh,
                                                                                 ns.online_bank_size),
                                ctx, online, ns.online_lr)
        wrapped.append(model)
        log.info(f"online selection: keep 1/{ns.online_ratio:g} of each super-batch of --batch-size, "
                 f"proxy {ns.online_proxy}, {ns.online_method}")
        return model, pre_train, pre_val

    saved_wds = oc_data.wds
    oc_main.create_model_and_transforms = create_and_wrap
    oc_data.wds = _WdsWithReference(saved_wds)
    try:
        oc_main.main(rest)
    finally:
        oc_main.create_model_and_transforms = create
        oc_data.wds = saved_wds
    if wrapped:
        counters = wrapped[0].counters()
        if ns.online_counters:
            with open(ns.online_counters, "w") as f:
                json.dump(counters, f, indent=2, sort_keys=True)
        log.info(f"online selection: {counters['steps']} steps, {counters['scored']} scored, "
                 f"{counters['selected']} trained on; mean learnability picked "
                 f"{counters['mean_learnability_selected']:.3f} vs super-batch {counters['mean_learnability_all']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
