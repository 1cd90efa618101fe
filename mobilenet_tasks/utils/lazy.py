"""Names of a package that load on first access (PEP 562), so that importing the
package, or one light module of it, does not import every module it re-exports
(torch, onnxruntime, mmdet...): the tools answer ``--help`` at once."""
import importlib
from typing import Callable, Dict, List, Tuple


def lazy_attributes(package: str, names: Dict[str, str], module_globals: dict
                    ) -> Tuple[Callable[[str], object], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``'s ``__init__``.

    Args:
        package (str): The package's ``__name__``.
        names (dict): Attribute name -> the module that defines it, absolute or
            relative to ``package`` (``'.layout'``).
        module_globals (dict): The ``__init__``'s ``globals()``, for ``__dir__``.
    """

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        raise AttributeError(f'module {package!r} has no attribute {name!r}')

    def __dir__():
        return sorted(list(module_globals) + list(names))

    return __getattr__, __dir__
