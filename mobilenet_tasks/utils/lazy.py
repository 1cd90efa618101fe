"""Names of a package that load on first access (PEP 562), so that importing the
package, or one light module of it, does not import every module it re-exports
(torch, onnxruntime, mmdet...): the tools answer ``--help`` at once."""
import importlib
from typing import Callable, Dict, List, Sequence, Tuple


def lazy_attributes(package: str, names: Dict[str, str], module_globals: dict,
                    submodules: Sequence[str] = ()
                    ) -> Tuple[Callable[[str], object], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``'s ``__init__``.

    Args:
        package (str): The package's ``__name__``.
        names (dict): Attribute name -> the module that defines it, absolute or
            relative to ``package`` (``'.layout'``).
        module_globals (dict): The ``__init__``'s ``globals()``, for ``__dir__``.
        submodules (Sequence[str]): Subpackages or modules that are attributes
            themselves (``mobilenet_tasks.models``), imported on first access.
    """

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        if name in submodules:
            return importlib.import_module(f'{package}.{name}')
        raise AttributeError(f'module {package!r} has no attribute {name!r}')

    def __dir__():
        return sorted(set(module_globals) | set(names) | set(submodules))

    return __getattr__, __dir__
