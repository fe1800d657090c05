"""Name -> builder registries, one per kind of thing (generators, discriminators, methods...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for an unknown or duplicate name; its message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to builder callables.

    >>> GENERATORS = Registry[nn.Module]("generator")
    >>> @GENERATORS.register("resnet_9blocks")
    ... def _build(**kw): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = fn
            return fn

        return decorator

    def add(self, name: str, entry: object) -> None:
        """Register a non-callable entry (a spec object) under ``name``; read it with :meth:`entry`."""
        self.register(name)(entry)  # type: ignore[arg-type]

    def entry(self, name: str) -> T:
        return self.get(name)  # type: ignore[return-value]

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._builders[name]
        except KeyError:
            valid = ", ".join(sorted(self._builders))
            raise RegistryError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def build(self, name: str, **kwargs: object) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
