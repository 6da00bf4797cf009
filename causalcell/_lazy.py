"""Package attributes imported on first use (PEP 562), so ``import causalcell`` is fast.

Each package ``__init__`` names its public attributes and the private module that
defines them; nothing is imported until an attribute is looked up. Then only that
module (and what it imports) loads, and the value is stored in the package so
later look-ups are plain attribute reads. ``import causalcell`` therefore costs
milliseconds, and the CLI parses its arguments before anything heavy loads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(
    package: str, attributes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for a package with lazy attributes.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    attributes : mapping of str to str
        Public name -> the module that defines it, relative to ``package``
        (``"._interventions"``). A name mapped to ``""`` is a submodule of
        ``package`` itself (``"plot": ""`` imports ``package.plot``).
    namespace : dict
        The package's ``globals()``: loaded attributes are stored there.

    Returns
    -------
    __getattr__, __dir__, __all__
    """

    def __getattr__(name: str) -> Any:
        try:
            module_name = attributes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        if module_name:
            value = getattr(importlib.import_module(module_name, package), name)
        else:
            value = importlib.import_module(f"{package}.{name}")
        namespace[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *attributes})

    return __getattr__, __dir__, sorted(attributes)
