"""The shared erasure API and one module per diffusion method.

```python
from pipelines import load_sd
from erasure import erase

result = erase("esd", load_sd("toy"), concept="star", preset="toy")
result.save("runs/esd-star")
```
"""

from .base import (
    EraseConfig,
    EraseData,
    EraseMethod,
    EraseResult,
    StepCallback,
    config_from_dict,
    erase,
    get_config_class,
    get_method_class,
    list_methods,
    make_config,
    register,
)

# Methods register themselves on import (peft's pattern): importing the package completes the registry.
from . import advunlearn, doco, esd, salun, sfd  # noqa: E402, F401  isort: skip
import gan  # noqa: E402,F401  registers GAN methods

__all__ = [
    "EraseConfig",
    "EraseData",
    "EraseMethod",
    "EraseResult",
    "StepCallback",
    "config_from_dict",
    "erase",
    "get_config_class",
    "get_method_class",
    "list_methods",
    "make_config",
    "register",
]
