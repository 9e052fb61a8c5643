"""The base of every solver's options: a frozen, hashable, self-validating dataclass.

Options are *static* for ``jax.jit`` (they set loop lengths, shapes and
branches), so they are hashable and compared by value: two equal option
objects share one compilation. Each solver defines a subclass
(``TuneOptions``, ``DesignOptions``, ...) whose ``validate`` checks every field
with :mod:`jaxpass._checks` and whose field defaults are the library's
defaults; the CLI reads its defaults and help from these fields
(:func:`jaxpass.experiments.cli_args.add_options`), so no option is restated by
hand. Change one with ``options.replace(steps=100)``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Options:
    """Frozen options; subclasses add fields (with ``metadata={"help": ...}``) and ``validate``."""

    def __post_init__(self):
        for f in dataclasses.fields(self):  # sequences become tuples so options stay hashable
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the field, the value and the allowed range."""

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(cls, options=None, **changes):
        """``options`` (default ``cls()``) with ``changes``: the drivers' ``(options=None, **changes)`` idiom."""
        if options is None:
            options = cls()
        elif not isinstance(options, cls):
            raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
        return options.replace(**changes) if changes else options

    def asdict(self) -> dict:
        return dataclasses.asdict(self)


def option(default, help: str, **kwargs):  # noqa: A002 - mirrors argparse's name
    """A dataclass field with its help text (read by the CLI)."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})
