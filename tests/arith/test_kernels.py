"""The compiled kernels' build (axhw.arith.kernels.build): the header is the one declaration of the ABI ctypes
calls through (its parse equals what the compiler reads from the C definitions), the strict parser refuses what
it does not know, every build is warning-free under -Werror (the target_clones fallback included), the cache
key hashes the files, and (slow) the kernel equality tests pass under AddressSanitizer and UBSan."""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from axhw.arith.kernels import build as kb
from axhw.arith.kernels import fused, lut

KERNELS = {"lut": lut._KERNEL, "fused": fused._KERNEL}
ROOT = Path(__file__).resolve().parents[2]

needs_cc = pytest.mark.skipif(kb.compiler() is None, reason="no C compiler")


def _copy(kernel: kb.Kernel, folder: Path, header: str | None = None) -> Path:
    """The kernel's C file and header (or the replacement ``header`` text) in ``folder``; the C file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / kernel.header).write_text(kernel.text(kernel.header) if header is None else header)
    src = folder / kernel.source
    src.write_text(kernel.text(kernel.source))
    return src


# --------------------------------------------------------------------------- the header is the ABI
@needs_cc
@pytest.mark.parametrize(("name", "extra"), [("lut", ()), ("lut", ("-DAXHW_NO_AVX512",)), ("fused", ()),
                                             ("fused", ("-DAXHW_NO_CLONES",))],
                         ids=["lut", "lut-portable", "fused", "fused-no-clones"])
def test_header_parse_equals_the_c_definitions(name, extra, tmp_path):
    """The compiler's own account of every exported definition (GCC's -aux-info, in each preprocessor variant)
    parses to exactly the header's prototypes: the ctypes signatures are those of the C code."""
    kernel = KERNELS[name]
    src = _copy(kernel, tmp_path)
    aux = tmp_path / "aux.txt"
    proc = subprocess.run([kb.compiler(), *kb.compile_flags((*kernel.flags, *extra)), "-fsyntax-only",
                           "-aux-info", str(aux), src.name], capture_output=True, text=True, cwd=tmp_path)
    if proc.returncode != 0 and "aux-info" in proc.stderr:
        pytest.skip("the compiler is not GCC (no -aux-info)")
    assert proc.returncode == 0, proc.stderr
    # `/* fused.c:26:NF */ extern int32_t axhw_quantize (const float *x, ...); /* (x, ...) ... */`
    definitions = re.findall(rf"^/\* {re.escape(kernel.source)}:\d+:NF \*/ extern (.*?;) /\*",
                             aux.read_text(), flags=re.M)
    header = kernel.declarations()
    structs = "".join(re.findall(r"^typedef struct \{[^}]*\}\s*\w+;", kernel.text(kernel.header), flags=re.M))
    seen = kb.parse_header(structs + "\n" + "\n".join(definitions), f"{kernel.source} (-aux-info)")
    assert set(seen.functions) == set(header.functions)  # the same functions: none exported undeclared
    for fn, proto in header.functions.items():
        got = seen.functions[fn]
        assert got.params == proto.params, fn
        assert got.restype == proto.restype, fn
        assert [t.__name__ for t in got.argtypes] == [t.__name__ for t in proto.argtypes], fn


@needs_cc
def test_struct_and_scalar_layouts_equal_ctypes(tmp_path):
    """Every table type has its ctypes size, and each header struct its ctypes size and field offsets (C11
    static assertions over the parse, compiled against the header)."""
    lines = ["#include <stddef.h>"]
    for ctype_name, ctype in kb._SCALARS.items():
        lines.append(f"_Static_assert(sizeof({ctype_name}) == {ctypes.sizeof(ctype)}, \"{ctype_name}\");")
    structs = 0
    for kernel in KERNELS.values():
        _copy(kernel, tmp_path)
        lines.insert(0, f'#include "{kernel.header}"')
        for sname, cls in kernel.declarations().structs.items():
            structs += 1
            lines.append(f"_Static_assert(sizeof({sname}) == {ctypes.sizeof(cls)}, \"{sname}\");")
            for field, _ in cls._fields_:
                off = getattr(cls, field).offset
                lines.append(f"_Static_assert(offsetof({sname}, {field}) == {off}, \"{sname}.{field}\");")
    assert structs == 2  # axhw_epi, axhw_lut_job
    check = tmp_path / "layout.c"
    check.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([kb.compiler(), "-std=c11", "-Wall", "-Werror", "-fsyntax-only", str(check)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@needs_cc
@pytest.mark.parametrize(("edit", "match"), [
    # a definition that disagrees with its declaration
    (lambda h: h.replace("int64_t Np, int64_t kblock, int sign);", "int64_t Np, int32_t kblock, int sign);"),
     "conflicting types"),
    # an exported function the header does not declare
    (lambda h: h.replace("int axhw_lut_avx512(void);", ""), "prototype"),
], ids=["conflicting", "undeclared"])
def test_compiler_refuses_definitions_the_header_disagrees_with(edit, match, tmp_path):
    kernel = KERNELS["lut"]
    header = edit(kernel.text(kernel.header))
    assert header != kernel.text(kernel.header)
    with pytest.raises(RuntimeError, match=match):
        kb.compile_library(kernel.text(kernel.source), tmp_path / "bad.so", flags=kernel.flags,
                           headers={kernel.header: header}, name=kernel.source)


GOOD = """/* a comment; with (parentheses) */
#ifndef G_H
#define G_H
#include <stdint.h>
typedef struct {
    double a, b;
    int32_t n;
} pair;
int64_t axhw_f(const float *restrict x, int64_t n,
               const pair *p, void *q, float s);
void axhw_g(void);
#endif
"""


def test_parser_reads_the_restricted_format():
    h = kb.parse_header(GOOD, "g.h")
    pair = h.structs["pair"]
    assert [(f, t) for f, t in pair._fields_] == [("a", ctypes.c_double), ("b", ctypes.c_double),
                                                   ("n", ctypes.c_int32)]
    f, g = h.functions["axhw_f"], h.functions["axhw_g"]
    assert (f.restype, f.argtypes, f.params) == (
        ctypes.c_int64, (ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(pair), ctypes.c_void_p, ctypes.c_float),
        ("x", "n", "p", "q", "s"))
    assert (g.restype, g.argtypes) == (None, ())


@pytest.mark.parametrize(("line", "match"), [
    ("void axhw_f(size_t n);", r"line 2: axhw_f parameter 1 \(n\): unknown type 'size_t'"),
    ("uint32_t axhw_f(int64_t n);", "unknown type 'uint32_t'"),
    ("void axhw_f(unsigned int n);", "cannot read the type"),
    ("void axhw_f(long long n);", "cannot read the type"),
    ("void axhw_f(int64_t);", "needs a type and a name"),
    ("void axhw_f(const int32_t *);", "needs a type and a name"),
    ("void axhw_f();", r"must say \(void\)"),
    ("void axhw_f(int64_t n, int64_t n);", "parameter name repeats"),
    ("void axhw_f(int64_t n[4]);", "unexpected '\\['"),
    ("void axhw_f(void (*cb)(int));", "is not a prototype"),
    ("void axhw_f(pair p);", "by value is not supported"),
    ("void axhw_f(other *p);", "unknown type 'other'"),
    ("void axhw_f(void v);", "by value is not supported"),
    ("static void axhw_f(int64_t n);", "cannot read the type"),
    ("void f(int64_t n);", "is not a prototype"),
    ("void axhw_f(int64_t n)", "is not a prototype"),
    ("#if defined(FAST)", "directive '#if defined\\(FAST\\)' is not allowed"),
    ("#define N 4", "is not allowed"),
    ("int64_t axhw_f(int64_t n); /* unterminated", "unterminated comment"),
    ("void axhw_g(void);", "axhw_g declared twice"),
])
def test_parser_refuses_what_it_does_not_know(line, match):
    """A wrong line is a RuntimeError naming it, never a guessed signature."""
    text = "typedef struct { double a; } pair;\n" + line + "\nvoid axhw_g(void);\n"
    with pytest.raises(RuntimeError, match=match):
        kb.parse_header(text, "bad.h")


def test_parser_refuses_bad_structs():
    with pytest.raises(RuntimeError, match="unknown type 'long'"):
        kb.parse_header("typedef struct { long a; } s;\nvoid axhw_g(void);\n")
    with pytest.raises(RuntimeError, match="a field name repeats"):
        kb.parse_header("typedef struct { double a, a; } s;\nvoid axhw_g(void);\n")
    with pytest.raises(RuntimeError, match="declares no axhw_ function"):
        kb.parse_header("/* nothing */\n")


@needs_cc
def test_bind_sets_the_parse_and_refuses_a_missing_symbol():
    if not lut.available():
        pytest.fail("a C compiler is present but the LUT kernel did not build (a warning under -Werror?)")
    lib = lut._load()
    for proto in lut._KERNEL.declarations().functions.values():
        fn = getattr(lib, proto.name)
        assert tuple(fn.argtypes) == proto.argtypes and fn.restype == proto.restype
    with pytest.raises(RuntimeError, match=r"does not export axhw_nope, declared in x\.h"):
        kb.bind(lib, kb.parse_header("void axhw_nope(void);\n", "x.h"))


# --------------------------------------------------------------------------- builds and the cache
@needs_cc
@pytest.mark.parametrize(("name", "extra"), [("lut", ()), ("lut", ("-DAXHW_NO_AVX512",)), ("fused", ()),
                                             ("fused", ("-DAXHW_NO_CLONES",))],
                         ids=["lut", "lut-portable", "fused", "fused-no-clones"])
def test_each_build_is_warning_free(name, extra, tmp_path, monkeypatch):
    """Every variant compiles under -Wall -Wextra -Wconversion -Werror: the clones build never falls back
    silently, and the fallback itself builds."""
    monkeypatch.setenv("AXHW_KERNEL_DIR", str(tmp_path))
    kernel = KERNELS[name]
    path = kernel.build(extra=extra)
    assert path == kernel.library_path() and path.is_file()
    for flag in kb.WARNING_FLAGS:
        assert flag in kb.compile_flags(kernel.flags)


@needs_cc
def test_lut_kernel_builds_without_openmp(tmp_path):
    """The fallback for a compiler that refuses -fopenmp (lut.build) compiles warning-free: the OpenMP
    directives compile away (an unguarded ``#pragma omp`` is an unknown-pragma error under -Werror, which once
    made this fallback fail and left such users with no kernel at all), and the build says it has no OpenMP."""
    kernel = lut._KERNEL
    assert "-fopenmp" in kernel.flags
    path = kb.compile_library(kernel.text(kernel.source), tmp_path / "lut-no-openmp.so", headers=kernel.headers(),
                              name=kernel.source)
    lib = kb.bind(ctypes.CDLL(str(path)), kernel.declarations())
    assert lib.axhw_lut_openmp() == 0


def test_cache_key_hashes_file_contents(monkeypatch, tmp_path):
    """An edited C file or header moves the library path (never a stale build); so do the sanitizers."""
    monkeypatch.setenv("AXHW_KERNEL_DIR", str(tmp_path))
    monkeypatch.delenv("AXHW_KERNEL_SANITIZE", raising=False)
    base = {name: k.library_path() for name, k in KERNELS.items()}
    assert base["lut"] == lut.library_path() and base["fused"] == fused.library_path()
    assert base["lut"].parent == tmp_path and base["lut"].name.startswith("lutkernel-")
    real = kb.Kernel.text
    for edited in ("lut.c", "lut.h", "fused.c", "fused.h"):
        monkeypatch.setattr(kb.Kernel, "text", staticmethod(lambda n, e=edited: real(n) + ("\n" if n == e else "")))
        moved = {name: k.library_path() for name, k in KERNELS.items()}
        assert {n for n in moved if moved[n] != base[n]} == {edited.split(".")[0]}, edited
    monkeypatch.setattr(kb.Kernel, "text", staticmethod(real))
    monkeypatch.setenv("AXHW_KERNEL_SANITIZE", "1")
    asan = lut.library_path()
    assert asan.name.startswith("lutkernel-asan-") and asan != base["lut"]
    assert set(kb.SANITIZE_FLAGS) <= set(kb.compile_flags())


def test_c_files_ship_with_the_package():
    """The C files are package data (found through importlib.resources), declared for the wheel."""
    import tomllib

    for kernel in KERNELS.values():
        assert "axhw_" in kernel.text(kernel.source) and f'#include "{kernel.header}"' in kernel.text(kernel.source)
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"*.c", "*.h"} <= set(patterns["axhw.arith.kernels"])


# --------------------------------------------------------------------------- sanitizers (slow)
_RUNNER = """
import json, sys
import pytest
rc = pytest.main(sys.argv[1:])
maps = sorted({line.split()[-1] for line in open("/proc/self/maps")
               if ("kernel" in line or "bitslice" in line) and line.rstrip().endswith(".so")})
print("AXHW_LOADED " + json.dumps(maps))
sys.exit(int(rc))
"""

#: Deliberate bugs, one per sanitizer, through the sanitized LUT kernel: ``asan`` writes two int64 into a
#: one-int64 buffer; ``ubsan`` sums three table entries of 2**30 in int32 (a kblock far above the safe one).
_BUGGY = """
import ctypes, sys
from axhw.arith.kernels import lut
lib = lut._load()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
t, a, b = libc.malloc(4 * 4), libc.malloc(4 * 4), libc.malloc(4 * 4)
ctypes.memset(a, 0, 16); ctypes.memset(b, 0, 16)
(ctypes.c_int32 * 4).from_address(t)[:] = [1 << 30] * 4
c = libc.malloc(8)
if sys.argv[1] == "asan":
    lib.axhw_lut_mm32(t, a, b, c, 1, 1, 2, 1 << 20)
else:
    lib.axhw_lut_mm32(t, a, b, c, 1, 3, 1, 1 << 20)
print("no report")
"""


def _asan_runtime(tmp_path: Path) -> str:
    """The compiler's libasan, once a sanitized shared library builds; else skip (a failure in CI)."""
    def missing(why: str) -> None:
        if os.environ.get("AXHW_REQUIRE_SIMULATORS", "") not in ("", "0"):
            pytest.fail(f"{why} (AXHW_REQUIRE_SIMULATORS is set)")
        pytest.skip(why)

    cc = kb.compiler()
    if cc is None:
        missing("no C compiler: no sanitizer build")
    assert cc is not None
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan) or not Path(libasan).is_file():
        missing(f"{cc} has no libasan.so (AddressSanitizer)")
    probe = tmp_path / "probe.c"
    probe.write_text("int axhw_probe(int *p);\nint axhw_probe(int *p) { return p[1]; }\n")
    proc = subprocess.run([cc, *kb.SANITIZE_FLAGS, "-shared", "-fPIC", str(probe), "-o", str(tmp_path / "probe.so")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"{cc} cannot build with {' '.join(kb.SANITIZE_FLAGS)}: {proc.stderr.strip()[-500:]}")
    return libasan


@pytest.mark.slow
def test_kernel_equality_tests_pass_under_sanitizers(tmp_path):
    """The LUT, fused-kernel and bit-sliced (gate netlist) equality tests, run against the ASan + UBSan build (fresh cache folder, the
    runtime preloaded): no report (the first one aborts), and the sanitized libraries were the ones loaded.
    Deliberate bugs (a heap overflow, a signed overflow) prove that a report does fail a run."""
    libasan = _asan_runtime(tmp_path)
    env = {**os.environ, "AXHW_KERNEL_SANITIZE": "1", "AXHW_KERNEL_DIR": str(tmp_path / "asan-cache"),
           "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1",
           "AXHW_LUT_KERNEL": "1", "AXHW_FAST_FORWARD": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    for bug, report in (("asan", "AddressSanitizer: heap-buffer-overflow"), ("ubsan", "signed integer overflow")):
        bad = subprocess.run([sys.executable, "-c", _BUGGY, bug], env=env, capture_output=True, text=True, cwd=ROOT)
        assert bad.returncode != 0 and report in bad.stderr and "no report" not in bad.stdout, bad.stderr[-4000:]

    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/arith/test_multipliers.py", "tests/nn/test_fused.py", "tests/arith/test_gates.py",
         "-k", "lut or kernel or compiled or test_fused"],
        env=env, capture_output=True, text=True, cwd=ROOT)
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"exit {run.returncode} after {time.monotonic() - start:.0f} s:\n{out[-8000:]}"
    assert "AddressSanitizer" not in out and "runtime error:" not in out, out[-8000:]
    assert re.search(r"\d+ passed", run.stdout), run.stdout[-2000:]
    loaded = json.loads(re.search(r"^AXHW_LOADED (.*)$", run.stdout, flags=re.M).group(1))
    names = sorted({Path(p).name.split("-asan-")[0] for p in loaded})
    assert names == ["bitslice", "hwkernel", "lutkernel"], loaded  # every kernel ran, and only sanitized builds
    for p in loaded:
        assert Path(p).parent == tmp_path / "asan-cache", p
        assert b"__asan_init" in Path(p).read_bytes() and b"__ubsan_handle" in Path(p).read_bytes(), p


def test_missing_sanitizer_skips_but_fails_in_ci(monkeypatch, tmp_path):
    """Without ASan the slow test skips; under AXHW_REQUIRE_SIMULATORS=1 (CI) it fails instead."""
    monkeypatch.setattr(kb, "compiler", lambda: None)
    monkeypatch.delenv("AXHW_REQUIRE_SIMULATORS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no C compiler"):
        _asan_runtime(tmp_path)
    monkeypatch.setenv("AXHW_REQUIRE_SIMULATORS", "1")
    with pytest.raises(pytest.fail.Exception, match="AXHW_REQUIRE_SIMULATORS is set"):
        _asan_runtime(tmp_path)
