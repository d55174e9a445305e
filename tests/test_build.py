"""nsprim build: the Dockerfile parser and substitution (hypothesis), the
.dockerignore rules, and real builds: layers, whiteouts, multi-stage, the
cache's invalidation rules counted step by step, and bad input."""

from __future__ import annotations

import io
import json
import os
import re
import string
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.images.dockerfile import DockerfileError, expand, parse
from nsprim.images.dockerignore import Matcher, parse_ignore

from .conftest import need

# ------------------------------------------------------------------ parser

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_values = st.text(alphabet=string.ascii_letters + string.digits + " ./-", max_size=12)
_plain = st.text(alphabet=string.ascii_letters + string.digits + "./-_", max_size=12)


@given(_names, _values, _plain)
def test_expand_braces_and_defaults(name: str, value: str, word: str) -> None:
    env = {name: value}
    assert expand(f"${{{name}}}", env) == value
    assert expand(f"${name}", env) == value
    assert expand(f"${{{name}:-{word}}}", env) == (value if value else word)
    assert expand(f"${{{name}-{word}}}", env) == value
    assert expand(f"${{{name}:+{word}}}", env) == (word if value else "")
    assert expand(f"${{{name}:-{word}}}", {}) == word
    assert expand(f"${{{name}:+{word}}}", {}) == ""


@given(_names, _values)
def test_expand_quotes(name: str, value: str) -> None:
    env = {name: value}
    assert expand(f"'${name}'", env) == f"${name}"          # single quotes: literal
    assert expand(f'"a ${name}"', env) == f"a {value}"      # double quotes: expanded
    assert expand(f"\\${name}", env) == f"${name}"          # escaped dollar
    assert expand(f"`${name}", env, escape="`") == f"${name}"


@given(st.lists(st.tuples(_names, _plain), min_size=1, max_size=4))
def test_expand_nested_default(pairs: list[tuple[str, str]]) -> None:
    env = dict(pairs)
    name, value = pairs[0]
    assert expand(f"${{NOPE_X:-${{{name}}}}}", env) == env[name]


def test_parse_forms_and_directives() -> None:
    df = parse("""# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS first
# a comment between
RUN echo a && \\
    echo b
RUN ["echo", "json"]
RUN <<EOF
echo heredoc
EOF
COPY --chown=1:2 a b /x/
FROM first
CMD echo done
""")
    assert [a.args for a in df.meta_args] == [("BASE=busybox",)]
    assert [(s.name, s.base) for s in df.stages] == [("first", "${BASE}"), (None, "first")]
    run1, run2, run3, copy = df.stages[0].instructions
    assert run1.args == ("echo a &&     echo b",) and not run1.json
    assert run2.args == ("echo", "json") and run2.json
    assert run3.heredocs[0].content == "echo heredoc\n"
    assert copy.flag("chown") == "1:2" and copy.args == ("a", "b", "/x/")


def test_parse_escape_directive_changes_continuations() -> None:
    df = parse("# escape=`\nFROM scratch\nRUN echo a `\n  b\n")
    assert df.escape == "`"
    assert df.stages[0].instructions[0].args == ("echo a   b",)
    with pytest.raises(DockerfileError, match="line 4: unknown instruction: ECHO"):
        parse("# escape=`\nFROM scratch\nRUN echo a \\\necho b\n")


@pytest.mark.parametrize("text, message", [
    ("FROM a\nBOGUS x\n", "line 2: unknown instruction: BOGUS"),
    ("RUN true\n", "line 1: no build stage"),
    ("# only a comment\n", "no instructions|missing FROM"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM a\nRUN <<EOF\nnever ends\n", "unterminated heredoc"),
])
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


# ------------------------------------------------------------ .dockerignore

_segment = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)


@given(st.lists(_segment, min_size=1, max_size=4), st.lists(_segment, max_size=3))
def test_ignore_pattern_covers_children(path: list[str], below: list[str]) -> None:
    pat = "/".join(path)
    m = Matcher(parse_ignore(pat + "\n"))
    assert m.excluded(pat)
    assert m.excluded("/".join(path + below))
    assert not m.excluded("/".join(path[:-1] + [path[-1] + "x"]))


@given(st.lists(_segment, min_size=1, max_size=3), _segment)
def test_ignore_exception_wins_when_last(dirs: list[str], name: str) -> None:
    d = "/".join(dirs)
    m = Matcher(parse_ignore(f"{d}\n!{d}/{name}.keep\n"))
    assert m.excluded(f"{d}/{name}.other")
    assert not m.excluded(f"{d}/{name}.keep")
    m2 = Matcher(parse_ignore(f"!{d}/{name}.keep\n{d}\n"))   # the last pattern decides
    assert m2.excluded(f"{d}/{name}.keep")


@given(st.lists(_segment, min_size=0, max_size=4), _segment)
def test_ignore_double_star_any_depth(dirs: list[str], name: str) -> None:
    m = Matcher(parse_ignore("**/*.log\n"))
    assert m.excluded("/".join(dirs + [name + ".log"]))
    assert not m.excluded("/".join(dirs + [name + ".txt"]))


def test_ignore_star_stays_in_one_directory_and_comments() -> None:
    m = Matcher(parse_ignore("# comment\n\n*.pyc\n/build\n"))
    assert m.excluded("a.pyc") and not m.excluded("d/a.pyc")
    assert m.excluded("build/x") and not m.excluded("src/build")
    with pytest.raises(ValueError, match="exclusion"):
        parse_ignore("!\n")


# ------------------------------------------------------------------ builds


def _write(ctx: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return ctx


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image built FROM scratch by nsprim (session store)."""
    from nsprim.images.build import build
    from nsprim.testing import busybox_rootfs, find_static_busybox

    need(os.geteuid() == 0, "needs root")
    bb = find_static_busybox()
    need(bb is not None, "needs a static busybox (apt-get install busybox-static)")
    assert bb is not None
    ctx = tmp_path_factory.mktemp("base-ctx")
    busybox_rootfs(ctx / "rootfs", bb)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\nCMD [\"sh\"]\n")
    img = build(str(ctx), tags=["nsprim-test/bbase:1"], network="none")
    assert "docker.io/nsprim-test/bbase:1" in img.names
    return "nsprim-test/bbase:1"


def _build(ctx: Path, **kw: object) -> tuple[object, object, str]:
    from nsprim.images.build import Builder

    out = io.StringIO()
    kw.setdefault("network", "none")
    b = Builder(str(ctx), progress=out, **kw)  # type: ignore[arg-type]
    img = b.run()
    return img, b, out.getvalue()


def _run(image: str, *cmd: str) -> str:
    from nsprim import run

    r = run(list(cmd), image=image, capture_output=True, network="none")
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_build_run_copy_env_workdir_and_history(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {
        "Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\nARG V=7\n"
                      "ENV A=hello B=${V:-x} C=${NOPE:+set}\nWORKDIR /app\n"
                      "COPY hello.txt sub ./\n"
                      "RUN echo \"$A $B [$C] $V\" > /app/out && mkdir -p /made\n"
                      "EXPOSE 8000 53/udp\nUSER 1000:1000\nCMD [\"cat\", \"/app/out\"]\n",
        "hello.txt": "hi\n", "sub/inner.txt": "inner\n"})
    img, b, out = _build(ctx, tags=["nsprim-test/app:1"])
    assert re.search(r"^Step 1/10 : FROM nsprim-test/bbase:1$", out, re.M)
    assert "Successfully tagged nsprim-test/app:1" in out
    assert img.working_dir == "/app" and img.user == "1000:1000"
    assert "A=hello" in img.env and "B=7" in img.env and "C=" in img.env
    assert img.exposed_ports == ["53/udp", "8000/tcp"]
    assert img.labels["salt"] == salt
    # three layers above the base: COPY and RUN made one each
    assert len(img.diff_ids) == 3
    assert _run("nsprim-test/app:1") == "hello 7 [] 7\n"
    assert _run("nsprim-test/app:1", "cat", "/app/hello.txt", "/app/inner.txt") == "hi\ninner\n"
    created = [h["created_by"] for h in img.history]
    assert any(c.startswith("|1 V=7 /bin/sh -c echo") for c in created)
    assert sum(1 for h in img.history if not h.get("empty_layer")) == len(img.diff_ids)


def test_whiteouts_and_opaque_directories(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {"Dockerfile":
                            f"FROM {base_image}\nLABEL salt={salt}\n"
                            "RUN mkdir -p /d/keep && echo 1 > /d/old && echo x > /gone\n"
                            "RUN rm /gone /bin/vi && rm -rf /d && mkdir /d && echo 2 > /d/new\n"})
    img, _b, _out = _build(ctx, tags=["nsprim-test/wh:1"])
    top = img.layers[-1]
    assert os.major(os.lstat(os.path.join(top, "gone")).st_rdev) == 0   # overlay whiteout
    assert os.getxattr(os.path.join(top, "d"), "trusted.overlay.opaque") == b"y"
    out = _run("nsprim-test/wh:1", "sh", "-c", "ls /d; test -e /gone || echo nogone; "
               "test -e /bin/vi || echo novi")
    assert out.split() == ["new", "nogone", "novi"]
    # the layer tar carries OCI whiteouts
    from nsprim.images.archive import layer_tar
    from nsprim.images.store import default_store

    buf = io.BytesIO()
    diff = layer_tar(default_store(), top, buf)  # type: ignore[arg-type]
    assert diff == img.diff_ids[-1]             # re-written: the same bytes
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert ".wh.gone" in names and "bin/.wh.vi" in names and "d/.wh..wh..opq" in names


def test_multistage_builds_only_needed_stages(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {"Dockerfile":
                            f"FROM {base_image} AS builder\nLABEL salt={salt}\n"
                            "RUN mkdir /out && echo built > /out/artifact\n"
                            "FROM builder AS broken\nRUN exit 3\n"
                            "FROM scratch AS final\nCOPY --from=builder /out/ /\n"
                            "COPY --from=0 /bin/busybox /bin/cat\n"})
    img, b, out = _build(ctx, target="final")
    assert "exit 3" not in out                   # the stage the target does not need
    assert len(img.diff_ids) == 2
    files = sorted(os.listdir(img.layers[0]))
    assert files == ["artifact"]
    from nsprim.images.build import BuildError

    with pytest.raises(BuildError, match=r"step 5/5 .*returned a non-zero code: 3"):
        _build(ctx, target="broken")


def test_heredoc_copy_and_chown_user(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {
        "Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\n"
                      "RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && "
                      "echo 'grp:x:3456:' >> /etc/group\n"
                      "COPY --chown=app:grp --chmod=640 f.txt /data/f.txt\n"
                      "ARG WHO=builder\n"
                      "COPY <<EOF /data/note\nhello \"${WHO}\" ${NAME:-world}\nEOF\n"
                      "COPY <<'EOF' /data/raw\nkept ${WHO}\nEOF\n"
                      "USER app\nRUN id -u > /tmp/uid\n",
        "f.txt": "content\n"})
    img, _b, _out = _build(ctx)
    st_ = os.stat(os.path.join(img.layers[-4], "data", "f.txt"))
    assert (st_.st_uid, st_.st_gid, st_.st_mode & 0o777) == (1234, 3456, 0o640)
    # an unquoted delimiter expands variables (quotes kept); a quoted one does not
    assert Path(img.layers[-3], "data", "note").read_text() == 'hello "builder" world\n'
    assert Path(img.layers[-2], "data", "raw").read_text() == "kept ${WHO}\n"
    assert Path(img.layers[-1], "tmp", "uid").read_text() == "1234\n"


def test_dockerignore_and_add_tar(base_image: str, tmp_path: Path) -> None:
    import tarfile

    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {
        "Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\nCOPY . /ctx/\n"
                      "ADD bundle.tar.gz /opt/\n",
        ".dockerignore": "*.log\nsecret\n**/*.tmp\n!keep.log\n",
        "a.txt": "a", "x.log": "x", "keep.log": "k", "secret/key": "s",
        "deep/er/t.tmp": "t", "deep/er/ok.txt": "ok"})
    with tarfile.open(tmp_path / "bundle.tar.gz", "w:gz") as t:
        data = b"from the tar\n"
        ti = tarfile.TarInfo("pkg/readme")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    img, _b, _out = _build(ctx)
    copied = sorted(str(p.relative_to(Path(img.layers[-2], "ctx")))
                    for p in Path(img.layers[-2], "ctx").rglob("*") if p.is_file())
    assert copied == [".dockerignore", "Dockerfile", "a.txt", "bundle.tar.gz", "deep/er/ok.txt",
                      "keep.log"]
    assert Path(img.layers[-1], "opt", "pkg", "readme").read_text() == "from the tar\n"
    # the context directory is 0700 (pytest's): its content is copied, the
    # destination directory is made 0755, as docker does
    assert os.stat(tmp_path).st_mode & 0o777 == 0o700
    assert os.stat(Path(img.layers[-2], "ctx")).st_mode & 0o777 == 0o755


# ------------------------------------------------------------------- cache


def _counted(ctx: Path, **kw: object) -> tuple[list[str], list[str], str]:
    _img, b, _out = _build(ctx, **kw)
    return list(b.ran), list(b.cached), _img.id  # type: ignore[attr-defined]


def test_cache_rules(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {
        "Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\nCOPY first.txt /\n"
                      "RUN cat /first.txt > /r1\nARG V=1\nRUN echo one > /r2\n"
                      "RUN echo $V > /r3\nCOPY last.txt /\nCMD [\"true\"]\n",
        "first.txt": "1", "last.txt": "2"})
    ran, cached, id1 = _counted(ctx)
    assert len(ran) == 7 and cached == ["ARG V=1"]
    # nothing changed: every step from the cache, the same image
    ran, cached, id2 = _counted(ctx)
    assert ran == [] and id2 == id1
    # mtime only: still cached
    os.utime(ctx / "first.txt", (1, 1))
    assert _counted(ctx)[0] == []
    # the file only the last COPY reads: that step and the ones after it
    (ctx / "last.txt").write_text("changed")
    assert _counted(ctx)[0] == ["COPY last.txt /", 'CMD ["true"]']
    # a mode change counts
    os.chmod(ctx / "last.txt", 0o600)
    assert _counted(ctx)[0] == ["COPY last.txt /", 'CMD ["true"]']
    # a build arg: from the first step that sees it
    assert _counted(ctx, build_args={"V": "2"})[0] == [
        "RUN echo one > /r2", "RUN echo $V > /r3", "COPY last.txt /", 'CMD ["true"]']
    # --no-cache runs everything
    assert len(_counted(ctx, no_cache=True)[0]) == 7
    # the cache survives across processes: the CLI sees it
    r = subprocess.run([sys.executable, "-m", "nsprim", "build", "--network", "none",
                        str(ctx)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(" ---> Using cache") == 7 and "Running in" not in r.stdout


def test_failed_step_keeps_the_cache_of_the_steps_before(base_image: str,
                                                          tmp_path: Path) -> None:
    from nsprim.images.build import BuildError

    salt = uuid.uuid4().hex
    df = f"FROM {base_image}\nLABEL salt={salt}\nRUN echo ok > /ok\nRUN exit 5\n"
    ctx = _write(tmp_path, {"Dockerfile": df})
    tag = f"nsprim-test/fail:{salt[:8]}"
    with pytest.raises(BuildError, match=r"line 4, step 4/4 .*RUN exit 5.*non-zero code: 5"):
        _build(ctx, tags=[tag])
    from nsprim.images.store import ImageNotFound, default_store

    with pytest.raises(ImageNotFound):
        default_store().get(tag)
    (ctx / "Dockerfile").write_text(df.replace("exit 5", "true"))
    ran, cached, _ = _counted(ctx)
    assert ran == ["RUN true"]


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("dockerfile, files, extra, message", [
    ("FROM {base}\nBOGUS x\n", {}, [], r"line 2: unknown instruction: BOGUS"),
    ("RUN true\n", {}, [], r"line 1: no build stage"),
    ("FROM {base}\nCOPY missing.txt /\n", {}, [], r"line 2, step 2/2 .*missing\.txt.*not found"),
    ("FROM {base}\n", {}, ["--build-arg", "=x"], r"invalid argument =x"),
    ("FROM {base}\n", {}, ["--target", "nope"], r"failed to reach build target nope"),
    ("FROM {base}\nRUN exit 3\n", {}, [], r"line 2, step 2/2 .*returned a non-zero code: 3"),
    ("FROM {base}\nCOPY a b c\n", {"a": "", "b": ""}, [], r"must be a directory and end"),
])
def test_bad_input_is_one_line_exit_1_and_no_tag(base_image: str, tmp_path: Path,
                                                 dockerfile: str, files: dict[str, str],
                                                 extra: list[str], message: str) -> None:
    _write(tmp_path, {"Dockerfile": dockerfile.format(base=base_image), **files})
    tag = f"nsprim-test/bad:{uuid.uuid4().hex[:8]}"
    r = subprocess.run([sys.executable, "-m", "nsprim", "build", "-q", "-t", tag, *extra,
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    err = [line for line in r.stderr.splitlines() if line.startswith("nsprim:")]
    assert len(err) == 1 and re.search(message, err[0]), r.stderr
    imgs = subprocess.run([sys.executable, "-m", "nsprim", "images"], capture_output=True,
                          text=True).stdout
    assert tag.split(":")[1] not in imgs


def test_dockerfile_from_stdin_and_quiet_iidfile(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    r = subprocess.run([sys.executable, "-m", "nsprim", "build", "-q", "--network", "none",
                        "--iidfile", str(tmp_path / "iid"), "-"],
                       input=f"FROM {base_image}\nLABEL salt={salt}\nRUN echo hi\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout)       # -q: only the id
    assert (tmp_path / "iid").read_text() == r.stdout.strip()


# ------------------------------------------------------- tag, save, history


@pytest.fixture
def podman_root(tmp_path: Path) -> Iterator[list[str]]:
    import shutil
    import tempfile

    need(shutil.which("podman") is not None, "needs podman (apt-get install podman)")
    root = Path(tempfile.mkdtemp(prefix="pmb-"))  # podman: a run root of <= 50 chars
    yield ["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
           "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    subprocess.run(["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
                    "--storage-driver", "vfs", "system", "reset", "-f"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_tag_save_load_and_podman_runs_it(base_image: str, tmp_path: Path,
                                          podman_root: list[str]) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path / "ctx", {"Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\n"
                                    "RUN echo from-nsprim > /msg\nCMD [\"cat\", \"/msg\"]\n"})
    img, _b, _out = _build(ctx, tags=["nsprim-test/saved:1.0"])
    cli = [sys.executable, "-m", "nsprim"]
    assert subprocess.run(cli + ["tag", "nsprim-test/saved:1.0", "savedshort:2.0"]).returncode == 0
    from nsprim.images.store import default_store

    assert default_store().get("savedshort:2.0").id == img.id   # docker.io/library/...
    assert "docker.io/library/savedshort:2.0" in default_store().get(img.id).names
    bad = subprocess.run(cli + ["tag", "nope-not-here:1", "x:1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "No such image: nope-not-here:1" in bad.stderr
    arch = tmp_path / "img.tar"
    r = subprocess.run(cli + ["save", "-o", str(arch), "savedshort:2.0"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    import tarfile

    with tarfile.open(arch) as t:
        manifest = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["savedshort:2.0"]
    assert manifest[0]["Config"] == img.id[7:] + ".json"            # same id: same bytes
    # nsprim load (from stdin) keeps the names of the archive
    default_store().remove("savedshort:2.0")
    with open(arch, "rb") as f:
        r = subprocess.run(cli + ["load"], stdin=f, capture_output=True, text=True)
    assert r.returncode == 0 and "docker.io/library/savedshort:2.0" in r.stdout, r.stderr
    assert default_store().get("savedshort:2.0").id == img.id
    # podman loads it and runs it
    r = subprocess.run(podman_root + ["load", "-i", str(arch)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(podman_root + ["run", "--rm", "--network", "none", "--ulimit",
                                      "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                      "savedshort:2.0"], capture_output=True, text=True,
                       timeout=120)
    assert r.stdout == "from-nsprim\n", r.stderr
    # history: newest first, the RUN with its size
    h = subprocess.run(cli + ["history", "savedshort:2.0"], capture_output=True, text=True)
    lines = h.stdout.splitlines()
    assert lines[0].startswith("IMAGE") and lines[1].startswith(img.id[7:19])
    assert "CMD [\"cat\", \"/msg\"]" in lines[1] and "echo from-nsprim" in lines[2]
    assert "12B" in lines[2]             # "from-nsprim\n"


def test_save_oci_layout_loads_back_with_names(base_image: str, tmp_path: Path) -> None:
    import shutil

    need(shutil.which("skopeo") is not None, "needs skopeo")
    cli = [sys.executable, "-m", "nsprim"]
    subprocess.run(cli + ["tag", base_image, "ocisaved:3"], check=True)
    arch = tmp_path / "oci.tar"
    subprocess.run(cli + ["save", "--format", "oci", "-o", str(arch), "ocisaved:3"], check=True)
    r = subprocess.run(["skopeo", "inspect", f"oci-archive:{arch}"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["Layers"]) == 1
    from nsprim.images.store import ImageStore

    other = ImageStore(str(tmp_path / "other-store"))
    imgs = other.load(str(arch))
    assert imgs[0].names == ["docker.io/library/ocisaved:3"]


# ------------------------------------------------------- layer tars, prune

_fname = st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,3})?", fullmatch=True)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.tuples(_fname, _fname), st.binary(max_size=64), max_size=8),
       st.sampled_from([0o644, 0o600, 0o755, 0o4755]),
       st.integers(min_value=0, max_value=70000))
def test_layer_tar_is_deterministic_and_round_trips(files: dict[tuple[str, str], bytes],
                                                    mode: int, uid: int) -> None:
    """tar(dir) == tar(extract(tar(dir))), whatever the tree: what the build
    stores is exactly what save and push send again."""
    import shutil
    import tempfile

    from nsprim.images.layer import extract_layer
    from nsprim.images.layertar import HashingWriter, write_layer_tar

    need(os.geteuid() == 0, "needs root (owners)")
    base = tempfile.mkdtemp(prefix="nsprim-layertar-")
    try:
        src = Path(base, "src")
        src.mkdir()
        for (d, f), data in files.items():
            (src / d).mkdir(exist_ok=True)
            p = src / d / f
            if p.exists():
                continue
            p.write_bytes(data)
            os.chown(p, uid, uid)
            os.chmod(p, mode)
        os.symlink("/etc/passwd", src / "link")
        os.mknod(src / "gone", 0o600 | 0o020000, 0)        # an overlay whiteout
        one, two = io.BytesIO(), io.BytesIO()
        h1 = HashingWriter(one)
        write_layer_tar(str(src), h1)
        dest = Path(base, "dest")
        dest.mkdir()
        one.seek(0)
        diff, _n = extract_layer(one, str(dest))
        assert diff == h1.digest()
        write_layer_tar(str(dest), HashingWriter(two))
        assert two.getvalue() == one.getvalue()
        st_ = os.stat(dest / "gone", follow_symlinks=False)
        assert os.major(st_.st_rdev) == 0 and (st_.st_mode & 0o170000) == 0o020000
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_builder_prune_forgets_the_cache(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path, {"Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\n"
                            "RUN echo {salt} > /f\n".replace("{salt}", salt)})
    img, _b, _o = _build(ctx)
    layer = img.layers[-1]  # type: ignore[attr-defined]
    assert _counted(ctx)[0] == []
    from nsprim.images.store import default_store

    default_store().remove(img.id)  # type: ignore[attr-defined]
    r = subprocess.run([sys.executable, "-m", "nsprim", "builder", "prune", "-f"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Total reclaimed" in r.stdout, r.stderr
    assert not os.path.exists(layer)          # no image used it: freed
    ran, _cached, _id = _counted(ctx)
    assert ran == [f"LABEL salt={salt}", f"RUN echo {salt} > /f"]


def test_onbuild_triggers_run_in_the_child_build(base_image: str, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    parent = _write(tmp_path / "parent", {
        "Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\n"
                      "ONBUILD COPY marker.txt /from-trigger.txt\n"
                      "ONBUILD RUN echo triggered > /ran\n"})
    img, _b, _o = _build(parent, tags=[f"nsprim-test/onbuild:{salt[:8]}"])
    assert img.config["config"]["OnBuild"] == [  # type: ignore[attr-defined]
        "COPY marker.txt /from-trigger.txt", "RUN echo triggered > /ran"]
    child = _write(tmp_path / "child", {
        "Dockerfile": f"FROM nsprim-test/onbuild:{salt[:8]}\nCMD [\"true\"]\n",
        "marker.txt": "child context\n"})
    img2, _b2, out = _build(child)
    assert "# Executing 2 build triggers" in out
    assert not img2.config["config"].get("OnBuild")  # type: ignore[attr-defined]
    assert Path(img2.layers[-2], "from-trigger.txt").read_text() == "child context\n"  # type: ignore[attr-defined]
    assert Path(img2.layers[-1], "ran").read_text() == "triggered\n"  # type: ignore[attr-defined]
