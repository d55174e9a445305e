"""Build: the cffi extension (csrc/build_ffi.py); nsprim-shim, the small
supervisor executable of detached containers (csrc/shim.c); and nsprim-init,
the freestanding helper that execs every container's command (csrc/init.c).
Both executables are installed inside the package (nsprim/nsprim-shim,
nsprim/nsprim-init).  The ``nsprim`` command itself is the C front end
(csrc/front.c), installed as a script beside the interpreter; the Python CLI
is the console script ``nsprim-py`` (pyproject.toml)."""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from distutils.command.build_scripts import build_scripts  # setuptools ships distutils

SHIM = "nsprim-shim"
INIT = "nsprim-init"
WARN = ["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"]
# no libc, no loader: a few KiB that exec in ~50 us
FREESTANDING = ["-ffreestanding", "-fno-builtin", "-fno-stack-protector",
                "-fno-asynchronous-unwind-tables", "-fno-pie"]


class BuildWithShim(build_ext):
    def run(self) -> None:
        super().run()
        self._build_exe(SHIM, "shim.c", WARN, [])
        self._build_exe(INIT, "init.c", WARN + FREESTANDING,
                        ["-nostdlib", "-static", "-no-pie", "-s"])

    def _build_exe(self, name: str, source: str, cflags: list[str],
                   ldflags: list[str]) -> None:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        cc = new_compiler()
        customize_compiler(cc)
        objs = cc.compile([os.path.join("csrc", source)], output_dir=self.build_temp,
                          include_dirs=["csrc"], extra_postargs=cflags)
        if self.inplace:
            out_dir = os.path.join("src", "nsprim")
        else:
            out_dir = os.path.join(self.build_lib, "nsprim")
        os.makedirs(out_dir, exist_ok=True)
        cc.link_executable(objs, name, output_dir=out_dir, extra_postargs=ldflags)


class BuildFront(build_scripts):
    """Compile csrc/front.c as the `nsprim` script (build_scripts' own copy
    reads scripts as Python text). The interpreter this build runs on is
    recorded in it as a fallback (the front end prefers the python beside
    itself, as in a venv)."""

    def run(self) -> None:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        cc = new_compiler()
        customize_compiler(cc)
        tmp = os.path.join("build", "front")
        py = sys.executable.replace("\\", "\\\\").replace('"', '\\"')
        objs = cc.compile([os.path.join("csrc", "front.c")], output_dir=tmp,
                          macros=[("NSPRIM_PYTHON", f'"{py}"')], extra_postargs=WARN)
        os.makedirs(self.build_dir, exist_ok=True)
        cc.link_executable(objs, "nsprim", output_dir=self.build_dir)
        os.chmod(os.path.join(self.build_dir, "nsprim"), 0o755)


setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"], scripts=["nsprim"],
      cmdclass={"build_ext": BuildWithShim, "build_scripts": BuildFront})
