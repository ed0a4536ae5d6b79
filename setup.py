"""Declares the C extension only; all metadata lives in pyproject.toml."""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "maglevx._core",
    sources=[
        "maglevx/_core.pyx",
        "csrc/mx_maglev.c",
        "csrc/mx_hsiphash.c",
        "csrc/mx_bulk.c",
    ],
    include_dirs=["csrc", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3"],
)

# The fast path of `maglevx predict` (CSV scanning); folds with csrc/'s inlines.
fastcsv = Extension(
    "maglevx._fastcsv",
    sources=[
        "maglevx/_fastcsv.pyx",
        "csrc/mx_maglev.c",
        "csrc/mx_hsiphash.c",
        "csrc/mx_bulk.c",
    ],
    include_dirs=["csrc", "maglevx"],
    extra_compile_args=["-O3"],
)

setup(
    ext_modules=cythonize(
        [extension, fastcsv],
        compiler_directives={"language_level": "3"},
    ),
)
