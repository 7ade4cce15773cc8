"""``python -m benchmarks.hdiff {hdiffpatch|hpatchlite} {diff OLD NEW PATCH|apply OLD PATCH OUT}``.

The ``hdiffpatch`` package is a library, not a command: this gives it one, so
its encoder's time and peak memory are measured alone in a child process like
every other peer's. HDiffPatch with LZMA (level 9, 8 MiB window) is its best
general setting; HPatchLite with tinyuz is the format its MCU patcher decodes.
"""

from __future__ import annotations

import sys
from pathlib import Path

NOTES = {
    "hdiffpatch": "HDiffPatch (hdiffpatch package), LZMA level 9",
    "hpatchlite": "HPatchLite (hdiffpatch package, lite format), tinyuz",
}


def main(argv: list[str]) -> int:
    import hdiffpatch

    if len(argv) != 5 or argv[0] not in NOTES or argv[1] not in ("diff", "apply"):
        print(
            f"usage: python -m benchmarks.hdiff {{{'|'.join(NOTES)}}} diff|apply A B C",
            file=sys.stderr,
        )
        return 2
    mode, verb = argv[0], argv[1]
    a, b, out = Path(argv[2]).read_bytes(), Path(argv[3]).read_bytes(), Path(argv[4])
    lite = mode == "hpatchlite"
    if verb == "diff":
        if lite:
            data = hdiffpatch.diff_lite(a, b, compression=hdiffpatch.TuzConfig())
        else:
            data = hdiffpatch.diff(a, b, hdiffpatch.LzmaConfig(level=9))
    else:
        data = hdiffpatch.apply_lite(a, b) if lite else hdiffpatch.apply(a, b)
    out.write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
