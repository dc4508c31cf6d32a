# SPDX-License-Identifier: MIT
"""Tests of tools/python/mfu.py with the standard library only (no torch, no
real shim).

- Without a shim every call is a no-op and mfu.active() is False.
- With a fake shim (a small C library built here with cc, exporting the
  functions of include/mfu/mfu.h and logging each call), the exact sequence
  of calls of the step/region/remat context managers, nesting and
  exceptions included, both through mfu._bind(lib) and through the real
  lookup among the process's global symbols (RTLD_GLOBAL and LD_PRELOAD).
- The FLOP helpers against hand-computed counts.
- mfu.torch.install() without torch: one-line ImportError.
- mfu.torch's wiring against a stand-in for the few torch APIs it uses (not
  torch itself: that needs a GPU machine with PyTorch).

Run: python3 tests/python/test_mfu_py.py   (MFU_TAP=1 for TAP output)
"""

import ctypes
import ctypes.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import traceback
import types
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
MFU_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "python")
sys.path.insert(0, MFU_DIR)

import mfu  # noqa: E402

FAKE_SHIM_C = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char log_buf[1 << 16];
static size_t log_len;
static int version = -1;

static void add(const char *fmt, ...)
{
	va_list ap;
	int n;
	if (log_len >= sizeof log_buf - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(log_buf + log_len, sizeof log_buf - log_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		log_len += (size_t)n < sizeof log_buf - 1 - log_len ? (size_t)n : sizeof log_buf - 1 - log_len;
}

int mfu_api_version(void)
{
	if (version < 0) {
		const char *v = getenv("FAKE_MFU_VERSION");
		version = v ? atoi(v) : 1;
	}
	return version;
}
void mfu_step_begin(void) { add("step_begin\n"); }
void mfu_step_end(double f) { add("step_end %.17g\n", f); }
void mfu_set_model_flops_per_step(double f) { add("set_model_flops %.17g\n", f); }
void mfu_region_push(const char *n, double f) { add("region_push %s %.17g\n", n ? n : "(null)", f); }
void mfu_region_push_dtype(const char *n, double f, const char *d)
{
	add("region_push_dtype %s %.17g %s\n", n ? n : "(null)", f, d ? d : "(null)");
}
void mfu_region_pop(void) { add("region_pop\n"); }
void mfu_remat_push(void) { add("remat_push\n"); }
#ifndef OMIT_REMAT_POP
void mfu_remat_pop(void) { add("remat_pop\n"); }
#endif

const char *fake_mfu_log(void) { return log_buf; }
void fake_mfu_reset(void) { log_len = 0; log_buf[0] = 0; }
void fake_mfu_set_version(int v) { version = v; }
"""


class _Shims:
    """Builds the fake shims once: full (loaded RTLD_GLOBAL) and one without
    mfu_remat_pop."""

    dir = None
    full_path = None
    partial_path = None
    full = None
    error = None

    @classmethod
    def get(cls):
        if cls.full is None and cls.error is None:
            try:
                cls._build()
            except Exception as e:  # noqa: BLE001 - reported as a skip or failure below
                cls.error = e
        if cls.error is not None:
            if isinstance(cls.error, FileNotFoundError):
                raise unittest.SkipTest("no C compiler: %s" % cls.error)
            raise cls.error
        return cls

    @classmethod
    def _build(cls):
        cc = shlex.split(os.environ.get("CC") or "cc")
        if not shutil.which(cc[0]):
            raise FileNotFoundError(cc[0])
        cls.dir = tempfile.mkdtemp(prefix="mfu-py-test-")
        src = os.path.join(cls.dir, "fake_shim.c")
        with open(src, "w") as f:
            f.write(FAKE_SHIM_C)
        cls.full_path = os.path.join(cls.dir, "libfakeshim.so")
        cls.partial_path = os.path.join(cls.dir, "libfakeshim_partial.so")
        for out, extra in ((cls.full_path, []), (cls.partial_path, ["-DOMIT_REMAT_POP"])):
            r = subprocess.run(cc + ["-shared", "-fPIC", "-O1", "-o", out, src] + extra,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            if r.returncode != 0:
                raise RuntimeError("cc failed: " + r.stdout)
        cls.full = ctypes.CDLL(cls.full_path, mode=ctypes.RTLD_GLOBAL)
        cls.full.fake_mfu_log.restype = ctypes.c_char_p
        cls.full.fake_mfu_set_version.argtypes = [ctypes.c_int]

    @classmethod
    def cleanup(cls):
        if cls.dir:
            shutil.rmtree(cls.dir, ignore_errors=True)


def tearDownModule():
    mfu._bind(None)
    _Shims.cleanup()


class ShimTest(unittest.TestCase):
    """Base: the fake shim bound and its log empty."""

    def setUp(self):
        self.shims = _Shims.get()
        self.lib = self.shims.full
        self.lib.fake_mfu_set_version(1)
        self.assertTrue(mfu._bind(self.lib))
        self.lib.fake_mfu_reset()

    def tearDown(self):
        mfu._bind(None)
        self.lib.fake_mfu_set_version(1)
        self.lib.fake_mfu_reset()

    def log(self):
        text = self.lib.fake_mfu_log().decode()
        self.lib.fake_mfu_reset()
        return text.splitlines()


def exercise_everything():
    """Calls every public API of mfu (torch integration aside)."""
    mfu.step_begin()
    mfu.step_end()
    mfu.step_end(5)
    mfu.set_model_flops_per_step(10)
    with mfu.step():
        with mfu.region("a", 1.0):
            with mfu.region(None, 2, dtype="bf16"):
                with mfu.remat():
                    pass

    @mfu.step(model_flops=3)
    def f():
        return 42

    assert f() == 42
    try:
        with mfu.step(4), mfu.region("r", 1), mfu.remat():
            raise KeyError("x")
    except KeyError:
        pass


# --------------------------------------------------------------------------
# (a) no shim
# --------------------------------------------------------------------------

class NoShim(unittest.TestCase):
    def setUp(self):
        mfu._bind(None)

    def test_inactive_in_process(self):
        self.assertFalse(mfu.active())
        self.assertEqual(mfu.api_version(), 0)
        exercise_everything()
        self.assertFalse(mfu.active())

    def test_calls_do_not_reach_a_loaded_but_unbound_shim(self):
        lib = _Shims.get().full
        lib.fake_mfu_reset()
        exercise_everything()
        self.assertEqual(lib.fake_mfu_log(), b"")

    def test_arguments_checked_without_shim_too(self):
        with self.assertRaises(ValueError):
            mfu.region("x", -1)
        with self.assertRaises(ValueError):
            mfu.region("x", float("nan"))
        with self.assertRaises(TypeError):
            mfu.region("x", "12")
        with self.assertRaises(ValueError):
            mfu.region("x", 1, dtype="bf17")
        with self.assertRaises(ValueError):
            mfu.step(model_flops=-3)
        with self.assertRaises(TypeError):
            mfu.step(lambda: None)  # bare @mfu.step
        with self.assertRaises(ValueError):
            mfu.set_model_flops_per_step(float("inf"))

    def _run(self, code, env_extra=None, preload=None):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.pop("MFU_DISABLE", None)
        env.pop("FAKE_MFU_VERSION", None)
        env["PYTHONPATH"] = MFU_DIR + os.pathsep + HERE
        if preload:
            env["LD_PRELOAD"] = preload
        env.update(env_extra or {})
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_fresh_process_without_shim(self):
        out = self._run("""
            import sys, mfu
            from test_mfu_py import exercise_everything
            assert not mfu.active() and mfu.api_version() == 0
            exercise_everything()
            assert "torch" not in sys.modules, "mfu imported torch"
            print("inactive")
        """)
        self.assertEqual(out, "inactive\n")

    def test_preloaded_shim_is_found(self):
        path = _Shims.get().full_path
        code = """
            import ctypes, mfu
            print(mfu.active(), mfu.api_version())
            with mfu.step(7):
                with mfu.region("x", 2):
                    pass
            log = ctypes.CDLL(None).fake_mfu_log
            log.restype = ctypes.c_char_p
            print(log().decode(), end="")
        """
        self.assertEqual(self._run(code, preload=path).splitlines(),
                         ["True 1", "step_begin", "region_push x 2", "region_pop", "step_end 7"])
        self.assertEqual(self._run(code, preload=path, env_extra={"MFU_DISABLE": "1"}).splitlines(),
                         ["False 0"])
        self.assertEqual(self._run(code, preload=path, env_extra={"MFU_DISABLE": "0"}).splitlines()[0],
                         "True 1")
        self.assertEqual(self._run(code, preload=path, env_extra={"FAKE_MFU_VERSION": "0"}).splitlines(),
                         ["False 0"])


# --------------------------------------------------------------------------
# (b) fake shim: exact call sequences
# --------------------------------------------------------------------------

class Binding(ShimTest):
    def test_bind_and_unbind(self):
        self.assertTrue(mfu.active())
        self.assertEqual(mfu.api_version(), 1)
        mfu._bind(None)
        self.assertFalse(mfu.active())
        with mfu.step(1):
            pass
        self.assertEqual(self.log(), [])

    def test_version_zero_is_inactive(self):
        self.lib.fake_mfu_set_version(0)
        self.assertFalse(mfu._bind(self.lib))
        self.assertFalse(mfu.active())
        exercise_everything()
        self.assertEqual(self.log(), [])

    def test_missing_function_is_inactive(self):
        partial = ctypes.CDLL(self.shims.partial_path)  # RTLD_LOCAL: only its own symbols
        self.assertFalse(mfu._bind(partial))
        self.assertFalse(mfu.active())

    def test_library_without_the_api_is_inactive(self):
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")  # its own symbols only
        self.assertFalse(mfu._bind(libm))
        self.assertFalse(mfu.active())
        self.assertTrue(mfu._bind(ctypes.CDLL(None)))  # the fake is RTLD_GLOBAL: found there

    def test_autobind_finds_global_symbols(self):
        mfu._bind(None)
        self.assertTrue(mfu._autobind())
        with mfu.remat():
            pass
        self.assertEqual(self.log(), ["remat_push", "remat_pop"])

    def test_autobind_honours_mfu_disable(self):
        with mock.patch.dict(os.environ, {"MFU_DISABLE": "1"}):
            self.assertFalse(mfu._autobind())
        self.assertFalse(mfu.active())
        with mock.patch.dict(os.environ, {"MFU_DISABLE": "0"}):
            self.assertTrue(mfu._autobind())


class Sequences(ShimTest):
    def test_plain_calls(self):
        mfu.step_begin()
        mfu.step_end()
        mfu.step_end(1e15)
        mfu.set_model_flops_per_step(123456789012)
        self.assertEqual(self.log(), ["step_begin", "step_end 0", "step_end 1000000000000000",
                                      "set_model_flops 123456789012"])

    def test_step(self):
        with mfu.step():
            pass
        with mfu.step(model_flops=6e12) as s:
            self.assertIsInstance(s, mfu.step)
        self.assertEqual(self.log(), ["step_begin", "step_end 0", "step_begin", "step_end 6000000000000"])

    def test_step_as_decorator(self):
        @mfu.step(model_flops=5)
        def train(x):
            mfu.set_model_flops_per_step(1)
            return x * 2

        self.assertEqual(train(3), 6)
        self.assertEqual(train(4), 8)
        self.assertEqual(self.log(), ["step_begin", "set_model_flops 1", "step_end 5"] * 2)

    def test_step_ends_on_exception(self):
        with self.assertRaises(RuntimeError):
            with mfu.step(9):
                raise RuntimeError("boom")
        self.assertEqual(self.log(), ["step_begin", "step_end 9"])

    def test_region(self):
        with mfu.region("attn", 1.5):
            pass
        with mfu.region():
            pass
        with mfu.region("a", 10, dtype="bf16"):
            pass
        with mfu.region(b"raw", 2, dtype="torch.float16"):
            pass
        with mfu.region("f8", 3, dtype="float8_e4m3fn"):
            pass
        self.assertEqual(self.log(), [
            "region_push attn 1.5", "region_pop",
            "region_push (null) 0", "region_pop",
            "region_push_dtype a 10 bf16", "region_pop",
            "region_push_dtype raw 2 fp16", "region_pop",
            "region_push_dtype f8 3 fp8", "region_pop",
        ])

    def test_every_dtype_class(self):
        for name in ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8"):
            with mfu.region("d", 1, dtype=name):
                pass
        self.assertEqual([line for line in self.log() if line != "region_pop"],
                         ["region_push_dtype d 1 " + n for n in
                          ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8")])

    def test_remat(self):
        with mfu.remat():
            with mfu.remat():
                pass
        self.assertEqual(self.log(), ["remat_push", "remat_push", "remat_pop", "remat_pop"])

    def test_nesting(self):
        with mfu.step(100):
            with mfu.region("outer", 10):
                with mfu.remat():
                    with mfu.region("inner", 1, dtype="fp16"):
                        pass
            with mfu.remat():
                pass
        self.assertEqual(self.log(), [
            "step_begin",
            "region_push outer 10", "remat_push", "region_push_dtype inner 1 fp16",
            "region_pop", "remat_pop", "region_pop",
            "remat_push", "remat_pop",
            "step_end 100",
        ])

    def test_exception_inside_nesting_pops_everything(self):
        class Boom(Exception):
            pass

        with self.assertRaises(Boom):
            with mfu.step(1):
                with mfu.region("r", 2):
                    with mfu.remat():
                        raise Boom()
        self.assertEqual(self.log(), ["step_begin", "region_push r 2", "remat_push", "remat_pop",
                                      "region_pop", "step_end 1"])

    def test_exception_is_not_swallowed_and_reuse(self):
        r = mfu.region("again", 4)
        for _ in range(2):
            with self.assertRaises(ZeroDivisionError):
                with r:
                    1 / 0
        self.assertEqual(self.log(), ["region_push again 4", "region_pop"] * 2)

    def test_decorators(self):
        @mfu.region("dec", 7)
        def g():
            return "g"

        @mfu.remat()
        def h():
            raise ValueError("h")

        self.assertEqual(g(), "g")
        with self.assertRaises(ValueError):
            h()
        self.assertEqual(self.log(), ["region_push dec 7", "region_pop", "remat_push", "remat_pop"])


# --------------------------------------------------------------------------
# (c) FLOP helpers
# --------------------------------------------------------------------------

class Flops(unittest.TestCase):
    F = mfu.flops

    def test_linear(self):
        self.assertEqual(self.F.linear(4096, 1024, 4096), 2 * 4096 * 1024 * 4096)
        self.assertEqual(self.F.linear(3, 5, 7), 210)
        self.assertEqual(self.F.linear(3, 5, 7, backward=True), 420)
        self.assertEqual(self.F.linear(0, 5, 7), 0)
        self.assertIsInstance(self.F.linear(3, 5, 7), int)

    def test_sdpa_full(self):
        # 4*B*H*Sq*Sk*Dh
        self.assertEqual(self.F.sdpa(2, 3, 5, 7, 11), 4 * 2 * 3 * 5 * 7 * 11)
        self.assertEqual(self.F.sdpa(2, 3, 5, 7, 11, backward=True), 8 * 2 * 3 * 5 * 7 * 11)
        # value head dim differs: 2*B*H*Sq*Sk*(Dh + Dv)
        self.assertEqual(self.F.sdpa(1, 1, 2, 3, 4, v_head_dim=8), 2 * 6 * 12)

    def test_sdpa_causal_square_is_exactly_half(self):
        self.assertEqual(self.F.sdpa(2, 3, 4, 4, 8, causal=True), 2 * 2 * 3 * 16 * 8)
        self.assertEqual(self.F.sdpa(2, 3, 4, 4, 8, causal=True) * 2, self.F.sdpa(2, 3, 4, 4, 8))
        self.assertEqual(self.F.sdpa(1, 1, 1, 1, 1, causal=True), 2)
        self.assertEqual(self.F.sdpa(2, 3, 4, 4, 8, causal=True, backward=True), 4 * 2 * 3 * 16 * 8)
        # odd S: S^2/2 pairs is not whole, the count is
        self.assertEqual(self.F.sdpa(1, 1, 3, 3, 2, causal=True), 2 * 9 * 2)

    def test_causal_pairs_top_left(self):
        # brute force over torch.ones(L, S).tril(0): query i sees keys j <= i
        for L in range(0, 9):
            for S in range(0, 9):
                want = sum(1 for i in range(L) for j in range(S) if j <= i)
                self.assertEqual(self.F.causal_pairs(L, S), want, (L, S))

    def test_sdpa_causal_rectangular(self):
        # Sq=2, Sk=5: rows see 1 and 2 keys -> 3 pairs; 4*pairs*Dh per head
        self.assertEqual(self.F.causal_pairs(2, 5), 3)
        self.assertEqual(self.F.sdpa(1, 1, 2, 5, 8, causal=True), 4 * 3 * 8)
        # Sq=5, Sk=2: rows see 1, 2, 2, 2, 2 keys -> 9 pairs
        self.assertEqual(self.F.causal_pairs(5, 2), 9)
        self.assertEqual(self.F.sdpa(2, 4, 5, 2, 16, causal=True), 4 * 2 * 4 * 9 * 16)
        self.assertEqual(self.F.sdpa(2, 4, 5, 2, 16, causal=True, backward=True), 8 * 2 * 4 * 9 * 16)
        # Dh 16, Dv 32, Sq=3, Sk=5: 6 pairs
        self.assertEqual(self.F.sdpa(1, 2, 3, 5, 16, causal=True, v_head_dim=32), 2 * 2 * 6 * 48)

    def test_training_step(self):
        self.assertEqual(mfu.training_step_model_flops(10), 30)
        self.assertEqual(self.F.training_step_model_flops(7), 21)
        self.assertEqual(mfu.training_step_model_flops(2.5), 7.5)
        big = 10 ** 20 + 1
        self.assertEqual(mfu.training_step_model_flops(big), 3 * 10 ** 20 + 3)

    def test_transformer_matches_mfu_synth(self):
        # tools/synth/synth.c: fwd_layer = 2*T*d*(3d + d + 4d + 4d) + 2*B*S^2*d,
        # fwd = layers*fwd_layer + 2*T*d*vocab, model = 3*fwd
        B, S, L, d, H, V = 2, 128, 3, 256, 4, 1000
        T = B * S
        fwd = L * (2 * T * d * (12 * d) + 2 * B * S * S * d) + 2 * T * d * V
        self.assertEqual(self.F.transformer_forward(B, S, L, d, H, vocab=V), fwd)
        self.assertEqual(self.F.transformer_step(B, S, L, d, H, vocab=V), 3 * fwd)

    def test_transformer_gqa_gated(self):
        # d=64, 4 heads of 16, 2 kv heads, gated MLP with d_ff=96, not causal
        B, S, d = 1, 8, 64
        T = B * S
        qkv = 2 * T * d * (64 + 2 * 2 * 16)
        out = 2 * T * 64 * d
        mlp = 2 * (2 * T * d * 96) + 2 * T * 96 * d
        attn = 4 * B * 4 * S * S * 16
        self.assertEqual(self.F.transformer_forward(B, S, 1, d, 4, d_ff=96, causal=False, kv_heads=2,
                                                    gated_mlp=True), qkv + out + mlp + attn)

    def test_bad_arguments(self):
        with self.assertRaises(TypeError):
            self.F.linear(1.5, 2, 3)
        with self.assertRaises(TypeError):
            self.F.linear(True, 2, 3)
        with self.assertRaises(ValueError):
            self.F.sdpa(1, 1, -1, 1, 1)
        with self.assertRaises(ValueError):
            self.F.transformer_forward(1, 1, 1, 10, 3)  # 10 % 3


# --------------------------------------------------------------------------
# (d) mfu.torch without torch
# --------------------------------------------------------------------------

class TorchMissing(unittest.TestCase):
    def _check(self):
        with mock.patch.dict(sys.modules, {"torch": None}):  # import torch -> ImportError
            with self.assertRaises(ImportError) as cm:
                mfu.torch.install()
        e = cm.exception
        self.assertIsInstance(e, mfu.MissingTorchError)
        self.assertIs(mfu.torch.MissingTorchError, mfu.MissingTorchError)
        self.assertNotIn("\n", str(e))
        self.assertIn("PyTorch", str(e))
        self.assertFalse(mfu.torch.installed())

    def test_without_shim(self):
        mfu._bind(None)
        self._check()

    def test_with_shim(self):
        lib = _Shims.get().full
        try:
            mfu._bind(lib)
            self._check()
        finally:
            mfu._bind(None)

    def test_uninstall_without_install(self):
        mfu.torch.uninstall()
        self.assertFalse(mfu.torch.installed())


# --------------------------------------------------------------------------
# mfu.torch wiring against a stand-in for the torch APIs it uses
# --------------------------------------------------------------------------

class _Handle:
    def __init__(self, hooks):
        self.hooks = hooks
        self.id = object()
        hooks[self.id] = None

    def remove(self):
        self.hooks.pop(self.id, None)


def _register(hooks, fn):
    h = _Handle(hooks)
    hooks[h.id] = fn
    return h


def make_fake_torch():
    """Modules named like torch's, holding only what mfu.torch touches, with
    the documented signatures and call order."""
    st = types.SimpleNamespace(grad=True, compiling=False, autocast=False, sdpa_calls=[], pending_recompute=[],
                               out_node="ScaledDotProductFlashAttentionBackward0")
    M = {name: types.ModuleType(name) for name in (
        "torch", "torch.compiler", "torch.optim", "torch.optim.optimizer", "torch.nn",
        "torch.nn.modules", "torch.nn.modules.module", "torch.nn.functional", "torch.utils",
        "torch.utils.checkpoint")}
    for name, mod in M.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(M[parent], child, mod)
    torch = M["torch"]
    torch.__version__ = "2.4.0+fake"
    torch._st = st
    torch.is_grad_enabled = lambda: st.grad
    torch.is_autocast_enabled = lambda device_type: st.autocast
    torch.get_autocast_dtype = lambda device_type: _Dtype("bfloat16")
    M["torch.compiler"].is_compiling = lambda: st.compiling

    class Node:
        def __init__(self, name, nxt=()):
            self._name = name
            self.next_functions = tuple((n, 0) for n in nxt)
            self.pre, self.post = [], []

        def name(self):
            return self._name

        def register_prehook(self, fn):
            self.pre.append(fn)

        def register_hook(self, fn):
            self.post.append(fn)

        def backward(self):  # what the engine does for one node
            for h in self.pre:
                h((None,))
            for h in self.post:
                h((None,), (None,))

    class Tensor:
        def __init__(self, shape, dtype="bfloat16", cuda=True, requires_grad=False):
            self.shape = tuple(shape)
            self.dtype = _Dtype(dtype)
            self.is_cuda = cuda
            self.device = types.SimpleNamespace(type="cuda" if cuda else "cpu")
            self.requires_grad = requires_grad
            self.grad_fn = None

    torch.Tensor = Tensor
    torch.Node = Node

    # torch.optim
    global_post = {}
    opt_mod = M["torch.optim.optimizer"]
    opt_mod.register_optimizer_step_post_hook = lambda hook: _register(global_post, hook)

    class Optimizer:
        def __init__(self):
            self._post = {}

        def register_step_post_hook(self, hook):
            return _register(self._post, hook)

        def step(self, closure=None):  # Optimizer.profile_hook_step's order
            for hook in list(self._post.values()) + list(global_post.values()):
                hook(self, (), {})

    opt_mod.Optimizer = Optimizer
    M["torch.optim"].Optimizer = Optimizer

    # torch.nn
    global_fpre = {}
    mm = M["torch.nn.modules.module"]
    mm.register_module_forward_pre_hook = lambda hook: _register(global_fpre, hook)

    class Module:
        def __call__(self, *inputs):
            for hook in tuple(global_fpre.values()):
                hook(self, inputs)
            return inputs

    mm.Module = Module
    M["torch.nn"].Module = Module

    def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                     scale=None, enable_gqa=False):
        st.sdpa_calls.append((query, attn_mask, is_causal))
        out = Tensor(query.shape[:-1] + value.shape[-1:], requires_grad=st.grad and query.requires_grad)
        if out.requires_grad:
            node = None
            for name in reversed(st.out_node.split(">")):
                node = Node(name, () if node is None else (node,))
            out.grad_fn = node
        return out

    M["torch.nn.functional"].scaled_dot_product_attention = scaled_dot_product_attention

    def checkpoint(function=None, *args, use_reentrant=None, **kwargs):
        if function is None and not args:
            return lambda fn: lambda *a, **k: checkpoint(fn, *a, use_reentrant=use_reentrant, **k)
        out = function(*args, **kwargs)
        if st.grad:
            st.pending_recompute.append(lambda: function(*args, **kwargs))
        return out

    M["torch.utils.checkpoint"].checkpoint = checkpoint

    def checkpoint_sequential(functions, segments, input, use_reentrant=None):
        # like torch's: looks checkpoint up in its module at call time
        return M["torch.utils.checkpoint"].checkpoint(lambda x: functions[0](x), input,
                                                      use_reentrant=use_reentrant)

    M["torch.utils.checkpoint"].checkpoint_sequential = checkpoint_sequential
    return M


class _Dtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class TorchWiring(ShimTest):
    """mfu.torch against the stand-in: which shim calls happen when."""

    def setUp(self):
        super().setUp()
        self.M = make_fake_torch()
        self.patch = mock.patch.dict(sys.modules, self.M)
        self.patch.start()
        self.t = self.M["torch"]
        self.st = self.t._st
        self.orig_ckpt = self.t.utils.checkpoint.checkpoint
        self.orig_sdpa = self.t.nn.functional.scaled_dot_product_attention

    def tearDown(self):
        mfu.torch.uninstall()
        self.patch.stop()
        super().tearDown()

    def sdpa(self, *args, **kwargs):
        # looked up at call time, as torch.nn.functional users do
        return self.t.nn.functional.scaled_dot_product_attention(*args, **kwargs)

    def test_inactive_shim_installs_nothing(self):
        mfu._bind(None)
        self.assertFalse(mfu.torch.install())
        self.assertFalse(mfu.torch.installed())
        self.assertIs(self.t.utils.checkpoint.checkpoint, self.orig_ckpt)
        self.assertIs(self.t.nn.functional.scaled_dot_product_attention, self.orig_sdpa)

    def test_steps_at_optimizer_steps(self):
        self.assertTrue(mfu.torch.install(model_flops_per_step=600))
        self.assertTrue(mfu.torch.installed())
        model, opt = self.t.nn.Module(), self.t.optim.Optimizer()
        self.assertEqual(self.log(), [])  # nothing until the first forward
        model(1)
        model(2)
        self.assertEqual(self.log(), ["step_begin"])
        opt.step()
        self.assertEqual(self.log(), ["step_end 600", "step_begin"])
        model(3)
        opt.step()
        self.assertEqual(self.log(), ["step_end 600", "step_begin"])
        mfu.torch.uninstall()
        model(4)
        opt.step()
        self.assertEqual(self.log(), [])
        self.assertFalse(mfu.torch.installed())

    def test_step_without_forward_first_and_callable_flops(self):
        n = iter([10, 20])
        mfu.torch.install(model_flops_per_step=lambda: next(n), checkpoint=False, sdpa=False)
        opt = self.t.optim.Optimizer()
        opt.step()  # no step open yet: only begins one
        opt.step()
        self.assertEqual(self.log(), ["step_begin", "step_end 20", "step_begin"])

    def test_default_flops_and_one_optimizer(self):
        a, b = self.t.optim.Optimizer(), self.t.optim.Optimizer()
        mfu.torch.install(optimizer=a)
        self.t.nn.Module()(0)
        b.step()
        a.step()
        self.assertEqual(self.log(), ["step_begin", "step_end 0", "step_begin"])

    def test_no_steps(self):
        mfu.torch.install(optimizer=False)
        self.t.nn.Module()(0)
        self.t.optim.Optimizer().step()
        self.assertEqual(self.log(), [])

    def test_checkpoint_recompute_is_remat(self):
        mfu.torch.install(optimizer=False)
        ck = self.t.utils.checkpoint

        def block(x, scale=1):
            with mfu.region("blk", x * scale):
                return x

        self.assertEqual(ck.checkpoint(block, 5, use_reentrant=False, scale=2), 5)
        self.assertEqual(self.log(), ["region_push blk 10", "region_pop"])  # forward: no remat
        self.st.pending_recompute.pop()()  # backward recomputes
        self.assertEqual(self.log(), ["remat_push", "region_push blk 10", "region_pop", "remat_pop"])

        deco = ck.checkpoint(use_reentrant=False)(block)  # decorator form
        deco(3)
        deco(4)
        self.st.pending_recompute.pop()()
        self.st.pending_recompute.pop()()
        self.assertEqual(self.log(), ["region_push blk 3", "region_pop", "region_push blk 4", "region_pop",
                                      "remat_push", "region_push blk 4", "region_pop", "remat_pop",
                                      "remat_push", "region_push blk 3", "region_pop", "remat_pop"])

        ck.checkpoint_sequential([block], 1, 6)  # finds the wrapper in its module
        self.st.pending_recompute.pop()()
        self.assertEqual(self.log(), ["region_push blk 6", "region_pop",
                                      "remat_push", "region_push blk 6", "region_pop", "remat_pop"])

    def test_checkpoint_recompute_raising_still_pops(self):
        mfu.torch.install(optimizer=False)
        calls = []

        def block(x):
            calls.append(x)
            if len(calls) > 1:
                raise RuntimeError("early stop")
            return x

        self.t.utils.checkpoint.checkpoint(block, 1, use_reentrant=False)
        with self.assertRaises(RuntimeError):
            self.st.pending_recompute.pop()()
        self.assertEqual(self.log(), ["remat_push", "remat_pop"])

    def test_checkpoint_under_compile_is_untouched(self):
        mfu.torch.install(optimizer=False)
        self.st.compiling = True
        self.t.utils.checkpoint.checkpoint(lambda x: x, 1, use_reentrant=False)
        self.st.pending_recompute.pop()()
        self.assertEqual(self.log(), [])

    def test_sdpa_regions(self):
        mfu.torch.install(optimizer=False)
        T = self.t.Tensor
        q = T((2, 4, 8, 16), requires_grad=True)
        k = T((2, 4, 8, 16))
        v = T((2, 4, 8, 16))
        out = self.sdpa(q, k, v, is_causal=True)
        self.assertEqual(out.shape, (2, 4, 8, 16))
        fwd = mfu.flops.sdpa(2, 4, 8, 8, 16, causal=True)
        self.assertEqual(fwd, 2 * 2 * 4 * 64 * 16)
        self.assertEqual(self.log(), ["region_push_dtype scaled_dot_product_attention %d bf16" % fwd,
                                      "region_pop"])
        out.grad_fn.backward()
        self.assertEqual(self.log(), ["region_push_dtype scaled_dot_product_attention_backward %d bf16"
                                      % (2 * fwd), "region_pop"])

        # Sq != Sk, causal positional, Dv != Dh, fp16: 6 pairs of (16 + 32)
        self.sdpa(T((1, 2, 3, 16), "float16"), T((1, 2, 5, 16)), T((1, 2, 5, 32)), None, 0.0, True)
        self.assertEqual(self.log(), ["region_push_dtype scaled_dot_product_attention 1152 fp16", "region_pop"])
        # a mask: every pair, no causal halving; float32: the model's class
        self.sdpa(T((1, 2, 3, 16), "float32"), T((1, 2, 5, 16)), T((1, 2, 5, 32)), attn_mask=object())
        self.assertEqual(self.log(), ["region_push scaled_dot_product_attention 2880", "region_pop"])
        # float32 under autocast: the autocast dtype
        self.st.autocast = True
        self.sdpa(T((3, 4, 8), "float32"), T((3, 4, 8)), T((3, 4, 8)))
        self.assertEqual(self.log(), ["region_push_dtype scaled_dot_product_attention %d bf16"
                                      % (4 * 3 * 4 * 4 * 8), "region_pop"])

    def test_sdpa_backward_node_lookup(self):
        mfu.torch.install(optimizer=False)
        T = self.t.Tensor
        args = (T((1, 1, 2, 4), requires_grad=True), T((1, 1, 2, 4)), T((1, 1, 2, 4)))
        self.st.out_node = "SliceBackward0>ScaledDotProductEfficientAttentionBackward0"
        out = self.sdpa(*args)
        self.log()
        out.grad_fn.backward()  # the slice node: not hooked
        self.assertEqual(self.log(), [])
        out.grad_fn.next_functions[0][0].backward()
        self.assertEqual(self.log(), ["region_push_dtype scaled_dot_product_attention_backward 128 bf16",
                                      "region_pop"])
        # math path: matmul's nodes, no fused node -> no backward declaration
        self.st.out_node = "UnsafeViewBackward0>BmmBackward0"
        out = self.sdpa(*args)
        self.log()
        self.assertEqual(out.grad_fn.pre + out.grad_fn.next_functions[0][0].pre, [])
        # no grad: no hooks
        self.st.grad = False
        self.st.out_node = "ScaledDotProductFlashAttentionBackward0"
        self.assertIsNone(self.sdpa(*args).grad_fn)

    def test_sdpa_not_declared(self):
        mfu.torch.install(optimizer=False)
        T = self.t.Tensor
        self.sdpa(T((1, 1, 2, 4), cuda=False), T((1, 1, 2, 4), cuda=False), T((1, 1, 2, 4), cuda=False))

        class Sub(T):
            pass

        self.sdpa(Sub((1, 1, 2, 4)), T((1, 1, 2, 4)), T((1, 1, 2, 4)))
        self.st.compiling = True
        self.sdpa(T((1, 1, 2, 4)), T((1, 1, 2, 4)), T((1, 1, 2, 4)))
        self.assertEqual(self.log(), [])
        self.assertEqual(len(self.st.sdpa_calls), 3)  # the original ran each time

    def test_uninstall_restores(self):
        mfu.torch.install()
        self.assertIsNot(self.t.utils.checkpoint.checkpoint, self.orig_ckpt)
        self.assertIsNot(self.t.nn.functional.scaled_dot_product_attention, self.orig_sdpa)
        self.assertEqual(self.t.nn.functional.scaled_dot_product_attention.__name__,
                         "scaled_dot_product_attention")
        mfu.torch.install(sdpa=False)  # replaces the first installation
        self.assertIs(self.t.nn.functional.scaled_dot_product_attention, self.orig_sdpa)
        mfu.torch.uninstall()
        self.assertIs(self.t.utils.checkpoint.checkpoint, self.orig_ckpt)
        mfu.torch.uninstall()
        self.assertFalse(mfu.torch.installed())

    def test_missing_api_is_a_clear_error(self):
        del self.M["torch.optim.optimizer"].register_optimizer_step_post_hook
        with self.assertRaises(RuntimeError) as cm:
            mfu.torch.install()
        self.assertIn("register_optimizer_step_post_hook", str(cm.exception))
        self.assertIs(self.t.utils.checkpoint.checkpoint, self.orig_ckpt)  # nothing half-installed
        self.assertTrue(mfu.torch.install(optimizer=False))

    def test_bad_flops(self):
        with self.assertRaises(ValueError):
            mfu.torch.install(model_flops_per_step=-1)
        self.assertFalse(mfu.torch.installed())


# --------------------------------------------------------------------------
# TAP output for meson (MFU_TAP=1)
# --------------------------------------------------------------------------

class TapResult(unittest.TestResult):
    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.n = 0
        self._cur = None

    def _emit(self, ok, name, directive="", diag=None):
        self.n += 1
        self.stream.write("%s %d - %s%s\n" % ("ok" if ok else "not ok", self.n, name, directive))
        for line in (diag or "").splitlines():
            self.stream.write("# %s\n" % line)
        self.stream.flush()

    def startTest(self, test):
        super().startTest(test)
        self._cur = {"fail": [], "skip": None, "todo": False}

    def stopTest(self, test):
        super().stopTest(test)
        c, self._cur = self._cur, None
        if c is None:
            return
        name = test.id()
        if c["fail"]:
            self._emit(False, name, diag="\n".join(c["fail"]))
        elif c["skip"] is not None:
            self._emit(True, name, " # SKIP " + c["skip"])
        else:
            self._emit(True, name, " # TODO expected failure" if c["todo"] else "")

    def _fail(self, test, err, flavour):
        text = "%s: %s" % (flavour, "".join(traceback.format_exception(*err)))
        if self._cur is None:  # class or module fixture
            self._emit(False, str(test), diag=text)
        else:
            self._cur["fail"].append(text)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err, "ERROR")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err, "FAIL")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._fail(subtest, err, "FAIL")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self._cur is None:
            self._emit(True, str(test), " # SKIP " + reason)
        else:
            self._cur["skip"] = reason

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._cur["todo"] = True

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._cur["fail"].append("unexpected success")


def main():
    if os.environ.get("MFU_TAP") == "1":
        suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
        result = TapResult(sys.stdout)
        suite.run(result)
        sys.stdout.write("1..%d\n" % result.n)
        sys.stdout.flush()
        sys.exit(0 if result.wasSuccessful() else 1)
    unittest.main()


if __name__ == "__main__":
    main()
