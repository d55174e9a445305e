"""Rootless images: pull from the tests' loopback registry and load, as
unprivileged users; the overlay mounted in the container's user namespace;
copy-on-write, whiteouts, device nodes, owners."""

from __future__ import annotations

import os
import shutil
import subprocess

from .rootless_users import Users

NONET = ("--network", "none")


def _pull(u: object, ref: str) -> None:
    from .rootless_users import User

    assert isinstance(u, User)
    r = u.nsprim("pull", ref, timeout=120)
    assert r.returncode == 0, r.stderr


def test_pull_and_run_full_and_single(rootless_users: Users, images: dict[str, str]) -> None:
    for who in ("a", "c"):  # a: full mapping (newuidmap), c: single id
        u = rootless_users[who]
        _pull(u, images["app"])
        r = u.nsprim("run", "--rm", *NONET, images["app"])
        assert r.returncode == 0, (who, r.stderr)
        assert r.stdout == "hello from app\n"
        # the layers are the user's, in the user's own store
        layers = os.path.join(u.data_root, "images")
        assert os.stat(layers).st_uid == u.uid
        lst = u.nsprim("images", "-q")
        assert lst.returncode == 0 and lst.stdout.strip(), lst.stderr


def test_overlay_copy_on_write(rootless_users: Users, images: dict[str, str]) -> None:
    u = rootless_users["a"]
    _pull(u, images["app"])
    r = u.nsprim("run", "--rm", *NONET, images["app"], "sh", "-c",
                 "echo changed > /app/hello.txt && cat /app/hello.txt && "
                 "awk '$5 == \"/\"' /proc/self/mountinfo | grep -c ' - overlay '")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["changed", "1"]
    r = u.nsprim("run", "--rm", *NONET, images["app"])
    assert r.stdout == "hello from app\n"  # the image is unchanged
    # nothing mounted on the host: the overlay lived in the container's namespaces
    with open("/proc/self/mountinfo") as f:
        assert u.data_root not in f.read()


def test_whiteouts_apply(rootless_users: Users, images: dict[str, str]) -> None:
    u = rootless_users["c"]
    _pull(u, images["wh"])
    r = u.nsprim("run", "--rm", *NONET, images["wh"])
    assert r.returncode == 1, r.stderr  # the image's `ls /data` of a deleted directory
    assert r.stdout.splitlines()[0] == "gone"
    assert "No such file" in r.stdout


def test_named_container_and_rmi(rootless_users: Users, images: dict[str, str]) -> None:
    u = rootless_users["b"]
    _pull(u, images["base"])
    r = u.nsprim("run", "-d", "--name", "img", *NONET, images["base"], "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        ex = u.nsprim("exec", "img", "sh", "-c", "echo hi > /f && cat /f")
        assert ex.returncode == 0, ex.stderr
        assert ex.stdout == "hi\n"
    finally:
        assert u.nsprim("rm", "-f", "img").returncode == 0
    r = u.nsprim("rmi", images["base"])
    assert r.returncode == 0, r.stderr
    assert images["base"].split("/", 1)[1].split(":")[0] not in u.nsprim("images").stdout


def test_load_an_oci_layout(rootless_users: Users, images: dict[str, str]) -> None:
    u = rootless_users["b"]
    dest = os.path.join(rootless_users.base, "layout-copy")
    if not os.path.exists(dest):
        shutil.copytree(images["layout"], dest)
        subprocess.run(["chmod", "-R", "a+rX", dest], check=True)
    r = u.nsprim("load", "-i", dest, timeout=120)
    assert r.returncode == 0, r.stderr
    assert u.nsprim("images", "-q").stdout.strip()


def test_owners_and_device_nodes_rootless(rootless_users: Users, tmp_path: object) -> None:
    """A layer with a file of uid 1000 and a device node: extracted by the
    user, the device skipped with a note, the owner recorded."""
    import io
    import tarfile

    u = rootless_users["c"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("owned")
        info.uid = info.gid = 1000
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
        dev = tarfile.TarInfo("dev/sda")
        dev.type = tarfile.BLKTYPE
        dev.devmajor, dev.devminor = 8, 0
        t.addfile(dev)
    tar = os.path.join(rootless_users.base, "owners.tar")
    with open(tar, "wb") as f:
        f.write(buf.getvalue())
    os.chmod(tar, 0o644)
    out = os.path.join(u.home, "layer")
    code = ("import sys\nfrom nsprim.images.layer import extract_layer, OWNER_XATTR\n"
            f"import os\nos.mkdir({out!r})\n"
            f"print(extract_layer(open({tar!r}, 'rb'), {out!r})[1])\n"
            f"print(os.getxattr({out!r} + '/owned', OWNER_XATTR).decode())\n"
            f"print(os.path.exists({out!r} + '/dev/sda'))\n")
    r = u.python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["1000:1000", "False"]
    assert "skipped device node /dev/sda" in r.stderr
    assert os.stat(os.path.join(out, "owned")).st_uid == u.uid


def _docker_archive(dest: str, rootfs: str) -> str:
    """A `docker save` archive of two layers: the busybox rootfs, then files
    of uid 1000 (a directory, a setuid file) and a device node."""
    import hashlib
    import io
    import json
    import tarfile

    def layer_of(add: object) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            add(t)  # type: ignore[operator]
        return buf.getvalue()

    def base(t: tarfile.TarFile) -> None:
        t.add(rootfs, arcname=".", filter=lambda i: None if i.name.startswith("./proc/")
              else i)

    def own(t: tarfile.TarFile) -> None:
        d = tarfile.TarInfo("d1000")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
        t.addfile(d)
        f = tarfile.TarInfo("owned")
        f.mode, f.uid, f.gid, f.size = 0o4755, 1000, 1000, 3
        t.addfile(f, io.BytesIO(b"hi\n"))
        f.name, f.mode = "d1000/inner", 0o640
        t.addfile(f, io.BytesIO(b"hi\n"))
        dev = tarfile.TarInfo("dev/sdz")
        dev.type, dev.devmajor, dev.devminor = tarfile.BLKTYPE, 8, 0
        t.addfile(dev)

    layers = [layer_of(base), layer_of(own)]
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        def put(name: str, data: bytes) -> None:
            i = tarfile.TarInfo(name)
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
        put("config.json", config)
        for n, x in enumerate(layers):
            put(f"l{n}.tar", x)
        put("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["own:1"],
                                          "Layers": ["l0.tar", "l1.tar"]}]).encode())
    with open(dest, "wb") as f:
        f.write(out.getvalue())
    os.chmod(dest, 0o644)
    return dest


def test_layer_owners_are_mapped_ids(rootless_users: Users) -> None:
    """Full mapping: a file of uid 1000 in the image is uid 1000 inside and
    the subordinate id 999 on the host; rmi removes it all.  Single id: the
    user's, root inside, the original owner recorded."""
    archive = os.path.join(rootless_users.base, "own.tar")
    if not os.path.exists(archive):
        _docker_archive(archive, rootless_users.rootfs)
    for who in ("a", "c"):
        u = rootless_users[who]
        r = u.nsprim("load", "-i", archive, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "skipped device node /dev/sdz" in r.stderr
        r = u.nsprim("run", "--rm", *NONET, "own:1", "sh", "-c",
                     "stat -c '%u:%g %a' /owned /d1000; test -e /dev/sdz || echo nodev")
        assert r.returncode == 0, (who, r.stderr)
        layers = os.path.join(u.data_root, "images", "layers")
        before = set(os.listdir(layers))
        found = [os.path.join(layers, d, "owned") for d in os.listdir(layers)
                 if os.path.exists(os.path.join(layers, d, "owned"))]
        assert len(found) == 1
        st = os.stat(found[0])
        if u.subid is not None:
            assert r.stdout.split() == ["1000:1000", "4755", "1000:1000", "755", "nodev"]
            assert (st.st_uid, st.st_gid) == (u.subid[0] + 999, u.subid[0] + 999)
            ex = u.nsprim("run", "--rm", *NONET, "-u", "1000", "own:1", "touch", "/d1000/x")
            assert ex.returncode == 0, ex.stderr
        else:
            assert r.stdout.split() == ["0:0", "4755", "0:0", "755", "nodev"]
            assert st.st_uid == u.uid
            assert os.getxattr(found[0], "user.nsprim.owner") == b"1000:1000"
        # a named volume is filled from the image at its target, owners kept
        vol = u.nsprim("run", "--rm", *NONET, "-v", f"v{who}:/d1000", "own:1", "sh", "-c",
                       "stat -c '%u %a %n' /d1000 /d1000/inner")
        assert vol.returncode == 0, vol.stderr
        inside = "1000" if u.subid is not None else "0"
        assert vol.stdout.splitlines() == [f"{inside} 755 /d1000", f"{inside} 640 /d1000/inner"]
        data = os.path.join(u.data_root, "volumes", f"v{who}", "_data", "inner")
        assert os.stat(data).st_uid == (u.subid[0] + 999 if u.subid else u.uid)
        assert u.nsprim("volume", "rm", f"v{who}").returncode == 0
        rmi = u.nsprim("rmi", "own:1")
        assert rmi.returncode == 0, rmi.stderr
        gone = before - set(os.listdir(layers))
        assert os.path.basename(os.path.dirname(found[0])) in gone and len(gone) == 2
        assert not os.path.exists(found[0])  # subordinate ids' files too
        # the container layers (with copied-up files of uid 1000) went with --rm
        cdir = os.path.join(u.data_root, "containers")
        left = [os.path.join(t, n) for t, ds, fs in os.walk(cdir) for n in ds + fs]
        assert left == []


def test_rmi_keeps_layers_an_in_process_container_reads(rootless_users: Users,
                                                        images: dict[str, str]) -> None:
    """A rootless in-process container's overlay is in its own mount
    namespace, where rmi cannot see it: the container holds a lease
    (tmp/lease-*.lock) on its layers, so rmi untags the image but keeps
    them, and the lease frees them as the container ends."""
    import time

    u = rootless_users["c"]
    data = os.path.join(u.home, "lease-data")  # a store of this test's own
    env = u.env(XDG_DATA_HOME=data)
    r = u.nsprim("pull", images["base"], env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    store = os.path.join(data, "nsprim", "images")
    ready = os.path.join(u.home, "lease-ready")
    code = ("import os, sys\nfrom nsprim import Container, PIPE\n"
            f"c = Container(['sh', '-c', 'read x; cat /bin/busybox | wc -c'], "
            f"image={images['base']!r}, "
            "network='none', stdin=PIPE, stdout=PIPE)\n"
            "c.start()\n"
            f"open({ready!r}, 'w').close()\n"
            "out, _ = c.communicate(sys.stdin.readline().encode())\n"
            "print(out.decode().strip(), c.returncode)\n")
    p = subprocess.Popen(["/usr/bin/setpriv", f"--reuid={u.uid}", f"--regid={u.gid}",
                          "--clear-groups", "--", "/usr/bin/python3", "-c", code],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, cwd=u.home)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        layers = sorted(os.listdir(os.path.join(store, "layers")))
        assert layers
        leases = [e for e in os.listdir(os.path.join(store, "tmp")) if e.startswith("lease-")]
        assert len(leases) == 1, leases
        r = u.nsprim("rmi", images["base"], env=env)
        assert r.returncode == 0, r.stderr
        assert "Untagged" in r.stdout
        assert sorted(os.listdir(os.path.join(store, "layers"))) == layers  # kept
        out, err = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    size, rc = out.split()
    assert int(size) > 100000 and rc == "0"  # the container still read its image
    assert not [e for e in os.listdir(os.path.join(store, "tmp")) if e.startswith("lease-")]
    # rmi deferred them to the lease, which freed them as the container ended
    assert os.listdir(os.path.join(store, "layers")) == []


def test_build_rootless(rootless_users: Users, images: dict[str, str]) -> None:
    """`nsprim build` without root: RUN steps in a user namespace mapped
    like the containers', COPY --chown, a whiteout; the layers are owned by
    the mapped ids on the host (container uid 1000 = subordinate id 999),
    as a rootless pull makes them, and the image runs."""
    u = rootless_users["a"]
    assert u.subid is not None
    _pull(u, images["base"])
    ctx = os.path.join(u.home, "buildctx")
    os.mkdir(ctx)
    with open(os.path.join(ctx, "hello.txt"), "w") as f:
        f.write("copied\n")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {images['base']}\n"
                "RUN mkdir -p /data && echo made > /data/f && chown 1000:1000 /data/f "
                "&& rm /bin/vi\n"
                "COPY --chown=1000:1000 hello.txt /home/hello.txt\n"
                "CMD [\"sh\", \"-c\", \"cat /data/f /home/hello.txt; "
                "stat -c %u /data/f /home/hello.txt; test -e /bin/vi || echo no-vi\"]\n")
    subprocess.run(["chown", "-R", f"{u.uid}:{u.gid}", ctx], check=True)
    r = u.nsprim("build", "-t", "localhost/rlbuild:1", ctx, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully tagged localhost/rlbuild:1" in r.stdout, r.stdout
    r = u.nsprim("run", "--rm", *NONET, "localhost/rlbuild:1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["made", "copied", "1000", "1000", "no-vi"]
    # on the host: the RUN layer's file belongs to the subordinate id of uid 1000
    owners = set()
    layers = os.path.join(u.data_root, "images", "layers")
    for layer in os.listdir(layers):
        p = os.path.join(layers, layer, "data", "f")
        if os.path.lexists(p):
            owners.add(os.lstat(p).st_uid)
    assert owners == {u.subid[0] + 999}
    # nothing of the build's user namespace is left (no pasta, no process)
    assert not [e for e in os.listdir(os.path.join(u.data_root, "run"))
                if e.startswith("build-pasta")]
    assert u.nsprim("rmi", "localhost/rlbuild:1").returncode == 0


def test_build_python_api_rootless_refused(rootless_users: Users) -> None:
    u = rootless_users["c"]
    r = u.python("from nsprim.images.build import Builder, BuildError\n"
                 "try:\n    Builder(None, dockerfile_text='FROM scratch\\n')\n"
                 "except BuildError as e:\n    print(e)\n")
    assert r.returncode == 0, r.stderr
    assert "nsprim build" in r.stdout
