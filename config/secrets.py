"""Secret config values: opaque to validation and printing, plaintext only where Pulumi decrypted them."""

from dataclasses import dataclass, field
from typing import Optional

# Keys of the `llmstack` namespace that hold secrets; any other key holding one is a mistake.
SECRET_KEYS = ("masterKey", "hfToken")
SHOWN_AS = "[secret]"


@dataclass(frozen=True)
class SecretValue:
    """A `secure:` value: `plaintext` is None when only its ciphertext is known (outside `pulumi up`)."""

    plaintext: Optional[str] = field(default=None, repr=False)

    def __repr__(self) -> str:
        return SHOWN_AS

    __str__ = __repr__
