"""StyleGAN2 and the GAN erasure methods.

```python
import gan
from erasure import erase

bundle = gan.load("toy")
result = erase("adapt_then_unlearn", bundle, concept="circle", preset="toy")
```

Importing this package registers the GAN methods (``adapt_then_unlearn``) with ``erasure``.
"""

from .bundle import (
    GANBundle,
    UnsafeCheckpointError,
    apply_generator,
    export_rosinality,
    load,
    save_bundle,
    save_generator,
    tiny_bundle,
    write_before_after,
)
from .stylegan2 import Discriminator, Generator

# Methods register themselves on import (as erasure's diffusion methods do).
from . import adapt_then_unlearn  # noqa: E402, F401  isort: skip

__all__ = [
    "Discriminator",
    "GANBundle",
    "Generator",
    "UnsafeCheckpointError",
    "apply_generator",
    "export_rosinality",
    "load",
    "save_bundle",
    "save_generator",
    "tiny_bundle",
    "write_before_after",
]
