"""Registered classifier configs for ``task: classification`` (ClassAct)."""
from learnsieve.models.classifier import ClassifierConfig
from learnsieve.models.registry import register_model


@register_model
def ls_cls_small() -> ClassifierConfig:
    """Reference-class classifier: mobilenetv3_small_100 at 64 px."""
    return ClassifierConfig(name="ls_cls_small", backbone="mobilenetv3_small_100", image_size=64)


@register_model
def ls_cls_tiny() -> ClassifierConfig:
    """Cheap proxy / learner: mobilenetv3_small_050 at 64 px."""
    return ClassifierConfig(name="ls_cls_tiny", backbone="mobilenetv3_small_050", image_size=64)


@register_model
def ls_cls_resnet() -> ClassifierConfig:
    """A stronger reference when there is time: resnet10t at 32 px (CIFAR resolution)."""
    return ClassifierConfig(name="ls_cls_resnet", backbone="resnet10t", image_size=32)


@register_model
def ls_cls_test() -> ClassifierConfig:
    """For tests only: timm's test_efficientnet at 32 px."""
    return ClassifierConfig(name="ls_cls_test", backbone="test_efficientnet", image_size=32)
