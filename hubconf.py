"""torch.hub entry points: every senet model by its registry name.

    model = torch.hub.load("OWNER/senet", "se_resnet50", weights="DEFAULT")  # the paper's released weights
    model = torch.hub.load("/path/to/senet", "se_resnet20", source="local", num_classes=10)
    torch.hub.list("OWNER/senet")                                            # every registered model

Keyword arguments go to `senet.create_model` (``num_classes``, ``in_chans``, ``weights``, ``layout``, ``r``, ...).
The entry points are the registry itself, so they never drift from it (a module ``__getattr__`` answers them).
"""

import os
import sys

dependencies = ["torch", "torchvision", "safetensors", "numpy", "yaml"]  # what `import senet` imports

# torch.hub imports this file from the repository root; the package lives in src/.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

import senet  # noqa: E402


def _entrypoint(name):
    def build(**kwargs):
        return senet.create_model(name, **kwargs)

    build.__name__ = name
    build.__doc__ = f"senet.create_model({name!r}, **kwargs): {senet.get_entry(name).doc}"
    return build


def __getattr__(name):
    if name in senet.list_models():
        return _entrypoint(name)
    raise AttributeError(f"module 'hubconf' has no attribute {name!r}; see senet.list_models()")


def __dir__():
    return sorted([*globals(), *senet.list_models()])
