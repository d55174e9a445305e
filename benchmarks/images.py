"""Image pull + unpack against skopeo copy + umoci unpack, and the cost of an
overlay mount + unmount, measured in one run against a local registry.

    python -m benchmarks.images [--rounds N] [--quick]

The image: busybox plus three layers of files (about 24 MB uncompressed,
random data so it does not compress away), pushed with skopeo to Debian's
docker-registry on loopback.  Needs root, docker-registry, skopeo, umoci.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import median


def build(work: Path) -> tuple[object, str]:
    from tests.registry import ImageBuilder, Registry

    from nsprim.testing import find_static_busybox

    bb = find_static_busybox()
    assert bb is not None, "needs busybox-static"
    (work / "reg").mkdir()
    reg = Registry(work / "reg")
    b = ImageBuilder(work, bb)
    b.base("l0")
    prev = "l0"
    for i in range(1, 4):
        files = {f"/data{i}/f{j}": os.urandom(1 << 20).hex() for j in range(4)}
        b.derive(prev, f"l{i}", files=files, cmd=["sh"])
        prev = f"l{i}"
    ref = reg.push(b.layout, prev, "bench/multi") + ":latest"
    return reg, ref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds = 1
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("docker-registry", "skopeo",
                                                               "umoci")):
        print("images: needs root, docker-registry, skopeo and umoci", file=sys.stderr)
        return 2
    from nsprim.images import ImageStore
    from nsprim.rootfs import OverlayRootfs

    work = Path(tempfile.mkdtemp(prefix="nsprim-bench-img-"))
    reg, ref = build(work)
    nsp: list[float] = []
    peer: list[float] = []
    ratios: list[float] = []
    try:
        for r in range(a.rounds):
            store_dir = work / f"store{r}"
            t = time.perf_counter()
            img = ImageStore(str(store_dir)).pull(ref)
            nsp.append(time.perf_counter() - t)
            oci, bundle = work / f"oci{r}", work / f"bundle{r}"
            t = time.perf_counter()
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                            f"docker://{ref}", f"oci:{oci}:x"], check=True)
            subprocess.run(["umoci", "unpack", "--image", f"{oci}:x", str(bundle)], check=True,
                           capture_output=True)
            peer.append(time.perf_counter() - t)
            ratios.append(nsp[-1] / peer[-1])
            shutil.rmtree(oci)
            shutil.rmtree(bundle)
        layers = img.layers
        os.environ["NSPRIM_ROOT"] = str(work / "state")
        mounts = []
        for _ in range(50 if not a.quick else 10):
            t = time.perf_counter()
            with OverlayRootfs(layers):
                pass
            mounts.append(time.perf_counter() - t)
    finally:
        reg.stop()  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)
    print(f"# pull + unpack of a {len(layers)}-layer image from a loopback registry, "
          f"{a.rounds} rounds")
    print(f"nsprim pull                  p50 {median(nsp) * 1e3:8.1f} ms")
    print(f"skopeo copy + umoci unpack   p50 {median(peer) * 1e3:8.1f} ms")
    print(f"ratio (median of per-round)      {median(ratios):8.2f}  (goal <= 1.0: "
          f"{'met' if median(ratios) <= 1.0 else 'NOT met'})")
    print(f"overlay mount + unmount      p50 {median(mounts) * 1e3:8.3f} ms  (goal < 1 ms)")
    print(f"\ncommands: nsprim.images.ImageStore(DIR).pull({ref!r}); skopeo copy "
          f"--src-tls-verify=false docker://{ref} oci:DIR:x && umoci unpack --image DIR:x B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
