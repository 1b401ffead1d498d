"""Cost of naming the weights in every feature-cache protocol (issue 9 item 8).

``stellar.models.loading.file_sha256`` hashes a weight file once per file state and memoises the
digest by (path + inode, size, mtime_ns) in memory and in ``$STELLAR_HOME/file-sha256.sqlite``.
This measures the three cases on a random file of ``--mb`` MiB:

    python benchmarks/weights_identity.py --mb 512
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["STELLAR_HOME"] = str(Path(tmp) / "home")
        from stellar.models import loading

        path = Path(tmp) / "weights.bin"
        with open(path, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        t = time.perf_counter()
        loading.file_sha256(path)
        first = time.perf_counter() - t
        loading._SHA_MEMO.clear()  # what a new process sees: only the on-disk memo
        t = time.perf_counter()
        loading.file_sha256(path)
        disk = time.perf_counter() - t
        t = time.perf_counter()
        loading.file_sha256(path)
        memory = time.perf_counter() - t
    print(f"{args.mb} MiB: first hash {first:.2f} s ({args.mb / 1024 / first:.2f} GiB/s); "
          f"next process (sqlite memo) {disk * 1e3:.1f} ms; same process {memory * 1e6:.0f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
