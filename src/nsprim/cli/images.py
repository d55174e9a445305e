"""The commands on images: pull, load, images, rmi."""

from __future__ import annotations

import argparse
import sys

from nsprim.cli import (
    _fail,
    _oneline,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cmd_pull(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store, print_progress

    try:
        img = default_store().pull(a.image, progress=None if a.quiet else print_progress())
    except (LookupError, OSError, ValueError) as e:
        return _fail(_oneline(e))
    if not a.quiet:
        digests = ", ".join(d.rsplit("@", 1)[1] for d in img.repo_digests[-1:])
        print(f"Digest: {digests}" if digests else f"Image: {img.id}")
    print(a.image if a.quiet else f"Pulled {a.image} ({img.id[:19]})")
    return 0


def cmd_load(a: argparse.Namespace) -> int:
    import tempfile

    from nsprim.images.store import default_store

    tmp = None
    try:
        if a.input is None or a.input == "-":  # docker load < FILE
            import shutil
            import sys

            tmp = tempfile.NamedTemporaryFile(prefix="nsprim-load-", suffix=".tar")
            shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
            tmp.flush()
        imgs = default_store().load(a.input if tmp is None else tmp.name)
    except (LookupError, OSError, ValueError, KeyError) as e:
        return _fail(_oneline(e))
    finally:
        if tmp is not None:
            tmp.close()
    for img in imgs:
        for n in img.names or [img.id]:
            print(f"Loaded image: {n}")
    return 0


_IMAGE_FILTERS = ("reference", "label", "dangling", "before", "since")


def _ref_match(pattern: str, repo: str, tag: str) -> bool:
    """docker's reference filter: a glob on ``repo`` or ``repo:tag``."""
    import fnmatch

    if ":" in pattern.rpartition("/")[2]:
        return fnmatch.fnmatchcase(f"{repo}:{tag}", pattern)
    return fnmatch.fnmatchcase(repo, pattern)


def cmd_images(a: argparse.Namespace) -> int:
    import time

    from nsprim.cli.listing import FilterError, emit, label_match, parse_filters
    from nsprim.dockerfmt import load, shapes

    try:
        f = parse_filters(a.filter, _IMAGE_FILTERS)
        for v in f.get("dangling", []):
            if v not in ("true", "false", "1", "0"):
                raise FilterError(f"Error response from daemon: Invalid filter "
                                  f"'dangling={v}'")
        summaries = load.image_objects(summary=True)
        created: dict[str, int] = {}
        for key in ("before", "since"):
            for ref in f.get(key, []):
                try:
                    img = load.inspect_image(ref)
                except LookupError:
                    raise FilterError(f"Error response from daemon: No such image: {ref}"
                                      ) from None
                created[ref] = int(shapes.parse_rfc3339(img["Created"]))
    except FilterError as e:
        print(str(e), file=sys.stderr)
        return 1
    except (LookupError, OSError, ValueError) as e:
        return _fail(_oneline(e))
    now = time.time()
    rows = []
    for s in summaries:
        if "label" in f and not label_match(s.get("Labels") or {}, f["label"]):
            continue
        if any(not s["Created"] < created[r] for r in f.get("before", [])):
            continue
        if any(not s["Created"] > created[r] for r in f.get("since", [])):
            continue
        tags = s["RepoTags"] or [None]
        dangling = not s["RepoTags"]
        if "dangling" in f and dangling != (f["dangling"][-1] in ("true", "1")):
            continue
        for tag in tags:
            repo_tag = tag or ""
            repo, _, t = repo_tag.rpartition(":") if tag else ("<none>", "", "<none>")
            if a.repository and not _ref_match(a.repository, repo, t) and \
                    repo_tag != a.repository:
                continue
            if "reference" in f and not any(_ref_match(p, repo, t) for p in f["reference"]):
                continue
            digest = next((d.rpartition("@")[2] for d in s["RepoDigests"]
                           if d.startswith(repo + "@")), None)
            rows.append(shapes.images_row(s, tag, trunc=not a.no_trunc, digest=digest,
                                          now=now))
    default = shapes.IMAGES_TABLE
    if a.digests:
        default = default.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t")
    if a.quiet:  # an image with several tags is listed once
        unique: dict[str, Any] = {}
        for r in rows:
            unique.setdefault(r.ID(), r)
        rows = list(unique.values())
    return emit(a.format, rows, default=default, headers=shapes.IMAGE_HEADERS, quiet=a.quiet)


def cmd_rmi(a: argparse.Namespace) -> int:
    from nsprim.images.store import ImageInUse, default_store

    rc = 0
    for name in a.images:
        try:
            for line in default_store().remove(name, force=a.force):
                print(line)
        except (LookupError, OSError, ImageInUse) as e:
            _fail(_oneline(e))
            rc = 1
    return rc
