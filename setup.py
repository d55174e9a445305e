"""Build: the cffi extension (csrc/build_ffi.py); nsprim-shim, the small
supervisor executable of detached containers (csrc/shim.c); and nsprim-init,
the freestanding helper that execs every container's command (csrc/init.c).
Both executables are installed inside the package (nsprim/nsprim-shim,
nsprim/nsprim-init)."""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

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


setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"], cmdclass={"build_ext": BuildWithShim})
