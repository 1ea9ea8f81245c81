"""llmstack's reusable Pulumi components: model servers and the LiteLLM gateway on Docker hosts.

Every public name of every module (its `__all__`) is exported here, so a new engine module is
picked up without editing this file.
"""

import importlib
import pkgutil

__all__: list[str] = []
for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    if _module.startswith("_"):
        continue
    _loaded = importlib.import_module(f".{_module}", __name__)
    for _name in getattr(_loaded, "__all__", ()):
        globals()[_name] = getattr(_loaded, _name)
        __all__.append(_name)
__all__.sort()
