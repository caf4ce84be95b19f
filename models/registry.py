"""Registries in timm's ``register_model`` style: a decorator adds a named factory, ``create``
raises on unknown names and lists what exists."""
from __future__ import annotations

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


MODELS: Registry[Callable[..., "object"]] = Registry("model")


def register_model(fn):
    """Register a function returning a ``ClipConfig`` under its own name."""
    return MODELS.register(fn.__name__)(fn)


def list_models() -> List[str]:
    import models.zoo  # noqa: F401  (registers the built-in configs)
    return MODELS.names()


def model_config(name: str, **overrides):
    """The ``ClipConfig`` registered as ``name``, with fields overridden."""
    import dataclasses
    import models.zoo  # noqa: F401
    cfg = MODELS.get(name)()
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def create_model(name: str, **overrides):
    """Build a freshly initialised ``DualEncoder`` from a registered config name."""
    from models.clip import DualEncoder
    return DualEncoder(model_config(name, **overrides))
