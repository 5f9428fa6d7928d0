"""The GAN erasure methods (one file per method), on StyleGAN2 models from ``pipelines``.

```python
import gan
from erasure import erase

bundle = gan.load("toy")
result = erase("adapt_then_unlearn", bundle, concept="circle", preset="toy")
```

Importing this package registers the GAN methods (``adapt_then_unlearn``, ``text_to_unlearn``) with ``erasure``.
The StyleGAN2 network (``pipelines.stylegan2``) and the bundle that loads, saves and samples it (``pipelines.gan``)
live in ``pipelines``, below the methods, so that the loaders, artifacts and the toy world can use them; they are
re-exported here.
"""

from pipelines.gan import (
    GANBundle,
    UnsafeCheckpointError,
    apply_generator,
    export_rosinality,
    load,
    save_bundle,
    save_generator,
    write_before_after,
)
from pipelines.stylegan2 import Discriminator, Generator

# Methods register themselves on import (as erasure's diffusion methods do).
from . import adapt_then_unlearn, text_to_unlearn  # noqa: E402, F401  isort: skip

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
    "write_before_after",
]
