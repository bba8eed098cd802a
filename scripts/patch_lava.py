"""Make lava-nc 0.10.0 importable on Python 3.11.

Python 3.11 rejects dataclass fields whose default is an unhashable instance
(`x: ByteEncoder = ByteEncoder()` in lava/magma/compiler/var_model.py raises
"mutable default ... use default_factory"). Rewrite those defaults to
`field(default_factory=ByteEncoder)`. Idempotent: a patched file is left alone.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path


def main() -> int:
    spec = importlib.util.find_spec("lava")
    if spec is None or not spec.submodule_search_locations:
        print("patch_lava: lava is not installed", file=sys.stderr)
        return 1
    path = Path(list(spec.submodule_search_locations)[0]) / "magma" / "compiler" / "var_model.py"
    text = path.read_text()
    patched = re.sub(
        r":\s*ByteEncoder\s*=\s*ByteEncoder\(\)", ": ByteEncoder = field(default_factory=ByteEncoder)", text
    )
    if "from dataclasses import dataclass, InitVar\n" in patched:
        patched = patched.replace(
            "from dataclasses import dataclass, InitVar\n", "from dataclasses import dataclass, InitVar, field\n"
        )
    if patched != text:
        path.write_text(patched)
        print(f"patch_lava: patched {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
