"""Build: the cffi extension (csrc/build_ffi.py) and nsprim-shim, the small
supervisor executable of detached containers (csrc/shim.c), installed inside
the package as nsprim/nsprim-shim."""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

SHIM = "nsprim-shim"


class BuildWithShim(build_ext):
    def run(self) -> None:
        super().run()
        self._build_shim()

    def _build_shim(self) -> None:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        cc = new_compiler()
        customize_compiler(cc)
        objs = cc.compile([os.path.join("csrc", "shim.c")], output_dir=self.build_temp,
                          extra_postargs=["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"])
        if self.inplace:
            out_dir = os.path.join("src", "nsprim")
        else:
            out_dir = os.path.join(self.build_lib, "nsprim")
        os.makedirs(out_dir, exist_ok=True)
        cc.link_executable(objs, SHIM, output_dir=out_dir)


setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"], cmdclass={"build_ext": BuildWithShim})
