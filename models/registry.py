"""Registries in timm's ``_registry.py`` style: a decorator adds a named factory, ``get`` raises on
unknown names and says what exists. This module imports no model: the configs register
themselves when ``learnsieve.models`` imports ``zoo`` and ``zoo_cls``, and ``factory.py`` builds
them."""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Generic, List, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory table with a decorator, a lookup that says what exists, and a listing."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj
        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


# name -> function returning a model config: a ``ClipConfig`` (image-text dual encoder) or a
# ``ClassifierConfig`` (ClassAct); ``factory.create_model`` builds either by its type.
MODELS: Registry[Callable[[], object]] = Registry("model")


def register_model(fn):
    """Register a function returning a model config under its own name."""
    return MODELS.register(fn.__name__)(fn)


def list_models() -> List[str]:
    return MODELS.names()


def model_config(name: str, **overrides):
    """The config registered as ``name`` (either type), with fields overridden."""
    cfg = MODELS.get(name)()
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
