"""Training loops for the reference and the proxy: in-batch CLIP loss, AdamW, warmup+cosine."""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from learnsieve.models.clip import DualEncoder

log = logging.getLogger(__name__)

Batch = Tuple[torch.Tensor, List[str]]


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * img @ txt.T
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and random translation (pad + crop) of a uint8 batch."""
    b, _, h, w = images.shape
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    return padded[:, :, dy:dy + h, dx:dx + w]


def augment_photo(images: torch.Tensor, generator: torch.Generator, scale: Tuple[float, float] = (0.35, 1.0),
                  ratio: Tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.2) -> torch.Tensor:
    """Photo augmentation of a uint8 batch, per image: random resized crop (area share in
    ``scale``, aspect in ``ratio``, resized back to the input size), horizontal flip, and colour
    jitter (brightness, contrast, saturation each scaled by a factor in [1-jitter, 1+jitter])."""
    b, _, h, w = images.shape
    u = torch.rand(b, 7, generator=generator)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * h * w
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_r)
    cw = torch.sqrt(area * aspect).round().clamp(4, w).long()
    ch = torch.sqrt(area / aspect).round().clamp(4, h).long()
    out = torch.empty(b, 3, h, w)
    for i in range(b):
        x0 = int(u[i, 2] * (w - cw[i] + 1))
        y0 = int(u[i, 3] * (h - ch[i] + 1))
        crop = images[i:i + 1, :, y0:y0 + ch[i], x0:x0 + cw[i]].float()
        out[i:i + 1] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    out = torch.where((u[:, 4] < 0.5)[:, None, None, None], out.flip(-1), out)
    if jitter > 0:
        f = 1.0 + jitter * (2 * u[:, 5:7] - 1)            # brightness, contrast
        s = 1.0 + jitter * (2 * torch.rand(b, generator=generator) - 1)  # saturation
        out = out * f[:, 0, None, None, None]
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * f[:, 1, None, None, None] + mean
        grey = out.mean(dim=1, keepdim=True)
        out = (out - grey) * s[:, None, None, None] + grey
    return out.clamp_(0, 255).round_().to(torch.uint8)


AUGMENTS = {"shift": augment, "photo": augment_photo, "none": None}


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(model: torch.nn.Module, batches: Iterable, steps: int, step_loss: Callable,
        augment_fn: Callable | None, lr: float = 2e-3, weight_decay: float = 0.05, warmup: int = 20,
        seed: int = 0, no_decay: Callable[[str, torch.nn.Parameter], bool] | None = None, log_every: int = 50,
        eval_every: int = 0,
        on_eval: Callable | None = None, log_seconds: float = 10.0, tag: str = "") -> List[float]:
    """The loop every learnsieve model trains with: AdamW (no weight decay on biases, norms and
    what ``no_decay`` names), linear warm-up + cosine, ``augment_fn(images, generator)`` on each
    uint8 batch, ``step_loss(model, images, targets)``; ``on_eval(step, model)`` in eval mode every
    ``eval_every`` steps and after the last. ``batches`` is cycled if shorter; returns losses.

    Progress: a line (``tag`` first, e.g. ``[reference]``) after the first step, then every
    ``log_every`` steps or ``log_seconds`` seconds, whichever comes first, and after the last: step,
    mean training loss since the last line, the held-out loss where ``on_eval`` returns one (and
    its best so far), steps per second, ETA. ``log_every=0``: no lines. An ``on_eval`` whose
    ``stop`` attribute turns true (early stopping's patience) ends the training there."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    params = list(model.named_parameters())
    plain = [p for n, p in params if p.ndim < 2 or (no_decay is not None and no_decay(n, p))]
    plain_ids = {id(p) for p in plain}
    decay = [p for _, p in params if id(p) not in plain_ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": plain, "weight_decay": 0.0}], lr=lr)
    model.train()
    losses: List[float] = []
    it = _cycle(batches)
    start = last_line = first = time.perf_counter()
    logged = 0  # losses already reported
    held: List[Tuple[int, float]] = []  # (step, held-out loss) from on_eval
    prefix = f"{tag} " if tag else ""
    for step in range(steps):
        images, targets = next(it)
        if augment_fn is not None:
            images = augment_fn(images, gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        loss = step_loss(model, images, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        stop = False
        if on_eval and ((eval_every and (step + 1) % eval_every == 0) or step + 1 == steps):
            model.eval()
            value = on_eval(step + 1, model)
            model.train()
            if isinstance(value, (int, float)):
                held.append((step + 1, float(value)))
            stop = bool(getattr(on_eval, "stop", False)) and step + 1 < steps
        now = time.perf_counter()
        if log_every and (step == 0 or (step + 1) % log_every == 0 or (log_seconds and now - last_line >= log_seconds)
                          or step + 1 == steps or stop):
            recent = losses[logged:]
            logged, last_line = len(losses), now
            if step == 0:
                first = now
            log.info(prefix + progress_line(step + 1, steps, sum(recent) / len(recent), held, now - start,
                                            rate=step / (now - first) if step and now > first else None))
        if stop:
            log.info(f"{prefix}early stopping: no lower held-out loss in the {step + 1 - on_eval.best_step} "
                     f"steps after step {on_eval.best_step}; stopped at step {step + 1} of {steps}, the "
                     f"remaining {steps - step - 1} skipped (train.patience)")
            break
    model.eval()
    return losses


def progress_line(step: int, steps: int, loss: float, held: Sequence[Tuple[int, float]], elapsed: float,
                  rate: Optional[float] = None) -> str:
    """``step 120/400 loss 2.113 held-out 2.350 (best 2.301 at 100) 3.2 steps/s ETA 1m56s elapsed 38s``.
    ``rate``: steps per second since the first step (which also builds caches, so it is slow); by
    default ``step / elapsed``."""
    parts = [f"step {step}/{steps} loss {loss:.3f}"]
    if held:
        best = min(held, key=lambda h: h[1])
        parts.append(f"held-out {held[-1][1]:.3f} (best {best[1]:.3f} at {best[0]})")
    if step == 1 and steps > 1:
        parts.append(f"(the first step took {duration(elapsed)}; ETA from the next line)")
        return " ".join(parts)
    rate = rate if rate is not None else (step / elapsed if elapsed > 0 else 0.0)
    parts.append(f"{rate:.2f} steps/s ETA {duration((steps - step) / rate) if rate else '?'} "
                 f"elapsed {duration(elapsed)}")
    return " ".join(parts)


def duration(seconds: float) -> str:
    """``45s``, ``3m07s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def train_clip(model: DualEncoder, batches: Iterable[Batch], steps: int, lr: float = 2e-3,
               weight_decay: float = 0.05, warmup: int = 20, seed: int = 0,
               do_augment: bool = True, augment_kind: str = "shift",
               log_every: int = 50, eval_every: int = 0,
               on_eval: Callable[[int, DualEncoder], None] | None = None, log_seconds: float = 10.0,
               tag: str = "") -> List[float]:
    """In-batch CLIP loss through ``fit``. ``augment_kind``: ``shift`` (flip + a few pixels of
    translation, for drawn shapes), ``photo`` (random resized crop, flip, colour jitter) or
    ``none`` (frozen pretrained towers: their cached features are what the heads train on)."""
    if augment_kind not in AUGMENTS:
        raise ValueError(f"unknown augment_kind {augment_kind!r}; known: {', '.join(AUGMENTS)}")
    device = model.image_proj.weight.device

    def step_loss(m, images, captions):
        return clip_loss(m.encode_image(images.to(device)), m.encode_text(captions), m.scale)

    return fit(model, batches, steps, step_loss, AUGMENTS[augment_kind] if do_augment else None, lr=lr,
               weight_decay=weight_decay, warmup=warmup, seed=seed, no_decay=lambda n, p: "bag" in n,
               log_every=log_every, eval_every=eval_every, on_eval=on_eval, log_seconds=log_seconds, tag=tag)


def _cycle(batches: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("no training batches")
