# SPDX-License-Identifier: MIT
"""Python side of mfushim: declare training steps, model FLOPs, regions of
non-cuBLAS work and recomputation to the preloaded shim.

Standard library only.  The module finds the shim among the process's global
symbols (``LD_PRELOAD=libmfushim.so`` puts it there) through ctypes; when it is
not there, when ``mfu_api_version()`` answers 0 (the shim is disabled or could
not start), or when ``MFU_DISABLE`` is set to anything but ``0``, every
function here is a cheap no-op and :func:`active` is False, so a training
script runs unchanged with or without the shim::

    import mfu

    for batch in loader:
        with mfu.step(model_flops=mfu.flops.training_step_model_flops(fwd)):
            loss = model(batch).sum()
            loss.backward()
            opt.step()

    with mfu.region("my_triton_attention", flops=mfu.flops.sdpa(B, H, S, S, D, causal=True)):
        out = triton_attention(q, k, v)

    with mfu.remat():
        recompute_something()

PyTorch users can let :func:`mfu.torch.install` do this for them (steps at
each ``optimizer.step()``, remat around ``torch.utils.checkpoint``
recomputation, regions around ``scaled_dot_product_attention``).

The C API behind this is ``include/mfu/mfu.h``; which FLOPs count and how is
``doc/metrics.md``.
"""

import contextlib
import ctypes
import functools
import importlib
import math
import operator
import os
import threading

__all__ = [
    "active",
    "api_version",
    "step",
    "step_begin",
    "step_end",
    "set_model_flops_per_step",
    "region",
    "remat",
    "flops",
    "training_step_model_flops",
    "MissingTorchError",
]
# mfu.torch is left out of __all__: "from mfu import *" must not shadow torch.

#: The version of the C API this module speaks (MFU_API_VERSION in mfu.h).
API_VERSION = 1

#: Dtype classes the shim knows (mfu_region_push_dtype), with the aliases
#: this module accepts for them.
_DTYPE_CLASSES = {
    "fp64": "fp64", "float64": "fp64", "double": "fp64",
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
    "tf32": "tf32",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp8": "fp8", "float8": "fp8",
    "int8": "int8",
}


# --------------------------------------------------------------------------
# Binding to the shim
# --------------------------------------------------------------------------

class _Api:
    """The shim's functions, typed.  Raises AttributeError if one is missing."""

    __slots__ = ("version", "step_begin", "step_end", "set_model_flops_per_step",
                 "region_push", "region_push_dtype", "region_pop", "remat_push", "remat_pop")

    def __init__(self, lib, version):
        c_double, c_char_p = ctypes.c_double, ctypes.c_char_p
        sigs = {
            "step_begin": [],
            "step_end": [c_double],
            "set_model_flops_per_step": [c_double],
            "region_push": [c_char_p, c_double],
            "region_push_dtype": [c_char_p, c_double, c_char_p],
            "region_pop": [],
            "remat_push": [],
            "remat_pop": [],
        }
        for name, argtypes in sigs.items():
            fn = getattr(lib, "mfu_" + name)  # AttributeError when absent
            fn.argtypes = argtypes
            fn.restype = None
            setattr(self, name, fn)
        self.version = version


# The bound shim, or None: every entry point reads it once per call.
_api = None


def _bind(lib):
    """Binds this module to the shim in ``lib`` (a ctypes.CDLL) or, with None,
    unbinds it.  Returns whether the shim is active.  The module calls this at
    import with the process's global symbols; tests call it with a fake shim.
    A library without ``mfu_api_version``, whose ``mfu_api_version()`` returns
    0 (disabled), or that lacks any function of the API leaves the module
    inactive."""
    global _api
    _api = None
    if lib is None:
        return False
    try:
        version_fn = lib.mfu_api_version
    except AttributeError:
        return False
    version_fn.argtypes = []
    version_fn.restype = ctypes.c_int
    version = version_fn()
    if version < 1:  # 0: the shim is disabled or failed to start
        return False
    try:
        api = _Api(lib, version)
    except AttributeError:
        return False
    _api = api
    return True


def _disabled_by_env():
    return os.environ.get("MFU_DISABLE", "") not in ("", "0")


def _autobind():
    """Looks the shim up among the process's global symbols (where
    LD_PRELOAD and RTLD_GLOBAL libraries are).  Returns whether it is active."""
    if _disabled_by_env():
        return _bind(None)
    try:
        lib = ctypes.CDLL(None)
    except OSError:
        return _bind(None)
    return _bind(lib)


def active():
    """True when a shim is loaded, enabled, and bound: calls here reach it."""
    return _api is not None


def api_version():
    """The shim's API version, or 0 when no active shim is bound."""
    a = _api
    return a.version if a is not None else 0


# --------------------------------------------------------------------------
# Argument checks (the same with and without a shim, so a script that works
# without the shim does not start failing with it)
# --------------------------------------------------------------------------

def _check_flops(what, value):
    if isinstance(value, (bool, str, bytes)):
        raise TypeError("%s must be a number, not %s" % (what, type(value).__name__))
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars and the like
        except (TypeError, ValueError):
            raise TypeError("%s must be a number, not %s" % (what, type(value).__name__)) from None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError("%s must be a finite number >= 0, not %r" % (what, value))
    return value


def _dtype_class(dtype):
    """Maps a dtype name ("bf16", "bfloat16", "torch.bfloat16", ...) to the
    shim's class name; raises ValueError for an unknown one."""
    name = str(dtype).strip().lower()
    if name.startswith("torch."):
        name = name[len("torch."):]
    cls = _DTYPE_CLASSES.get(name)
    if cls is None and name.startswith("float8"):
        cls = "fp8"
    if cls is None:
        raise ValueError("unknown dtype class %r (one of fp64, fp32, tf32, fp16, bf16, fp8, int8)" % (dtype,))
    return cls


def _encode_name(name):
    if name is None:
        return None
    if isinstance(name, bytes):
        return name
    return str(name).encode("utf-8", "replace")


# --------------------------------------------------------------------------
# Steps, regions, remat
# --------------------------------------------------------------------------

def step_begin():
    """Marks the start of a training step (mfu_step_begin)."""
    a = _api
    if a is not None:
        a.step_begin()


def step_end(model_flops=None):
    """Ends the step begun last (mfu_step_end).  model_flops: the FLOPs the
    model needs for this step (forward + backward, no recomputation); None or
    0 uses the default (set_model_flops_per_step or MFU_MODEL_FLOPS_PER_STEP)."""
    f = 0.0 if model_flops is None else _check_flops("model_flops", model_flops)
    a = _api
    if a is not None:
        a.step_end(f)


def set_model_flops_per_step(model_flops):
    """Sets the process-wide default model FLOPs per step."""
    f = _check_flops("model_flops", model_flops)
    a = _api
    if a is not None:
        a.set_model_flops_per_step(f)


class step(contextlib.ContextDecorator):
    """One training step: ``with mfu.step(model_flops=F): ...`` or, as a
    decorator, ``@mfu.step(model_flops=F)``.  Calls mfu_step_begin on entry
    and mfu_step_end(F) on exit, also when the body raises (the exception
    propagates).  Without model_flops (or with 0) the shim uses its default
    (:func:`set_model_flops_per_step` or MFU_MODEL_FLOPS_PER_STEP)."""

    __slots__ = ("_flops",)

    def __init__(self, model_flops=None):
        if callable(model_flops):
            raise TypeError("use @mfu.step() or @mfu.step(model_flops=...), with parentheses")
        self._flops = 0.0 if model_flops is None else _check_flops("model_flops", model_flops)

    def __enter__(self):
        a = _api
        if a is not None:
            a.step_begin()
        return self

    def __exit__(self, exc_type, exc, tb):
        a = _api
        if a is not None:
            a.step_end(self._flops)
        return False


class region(contextlib.ContextDecorator):
    """Declares ``flops`` for the work launched by this thread inside the
    block (attention, Triton and other kernels cuBLAS does not see):
    mfu_region_push[_dtype] on entry, mfu_region_pop on exit, always, also
    when the body raises.  dtype: the class the work runs in ("bf16", "fp16",
    "fp32", "tf32", "fp64", "fp8", "int8", or aliases such as "bfloat16" or
    "torch.float16"); None: the model's class.  Regions nest; GEMMs inside a
    region are counted as GEMMs by the shim, not again as region FLOPs, so
    declare only what cuBLAS does not compute."""

    __slots__ = ("_name", "_flops", "_dtype")

    def __init__(self, name=None, flops=0.0, dtype=None):
        self._name = _encode_name(name)
        self._flops = _check_flops("flops", flops)
        self._dtype = None if dtype is None else _dtype_class(dtype).encode("ascii")

    def __enter__(self):
        a = _api
        if a is not None:
            if self._dtype is None:
                a.region_push(self._name, self._flops)
            else:
                a.region_push_dtype(self._name, self._flops, self._dtype)
        return self

    def __exit__(self, exc_type, exc, tb):
        a = _api
        if a is not None:
            a.region_pop()
        return False


class remat(contextlib.ContextDecorator):
    """Marks recomputation: FLOPs executed by this thread inside the block
    count as hardware and remat FLOPs, never as model FLOPs.  Pushes on
    entry, pops on exit, always, also when the body raises.  Nests."""

    __slots__ = ()

    def __enter__(self):
        a = _api
        if a is not None:
            a.remat_push()
        return self

    def __exit__(self, exc_type, exc, tb):
        a = _api
        if a is not None:
            a.remat_pop()
        return False


# --------------------------------------------------------------------------
# FLOP-count helpers (pure; doc/metrics.md conventions)
# --------------------------------------------------------------------------

def _count(name, value):
    if isinstance(value, bool):
        raise TypeError("%s must be an integer, not bool" % name)
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, not %s" % (name, type(value).__name__)) from None
    if v < 0:
        raise ValueError("%s must be >= 0, not %d" % (name, v))
    return v


def training_step_model_flops(forward_flops):
    """Model FLOPs of a training step from its forward FLOPs: 3x (the
    backward of a linear layer costs twice its forward, dX and dW; attention
    backward is counted as 2x its forward too).  Exact for an int."""
    if isinstance(forward_flops, bool):
        raise TypeError("forward_flops must be a number, not bool")
    if isinstance(forward_flops, int):
        if forward_flops < 0:
            raise ValueError("forward_flops must be >= 0")
        return 3 * forward_flops
    return 3 * _check_flops("forward_flops", forward_flops)


class _Flops:
    """FLOP counts with the conventions of doc/metrics.md.  Every count is an
    exact Python int; arguments are non-negative integers."""

    training_step_model_flops = staticmethod(training_step_model_flops)

    @staticmethod
    def linear(batch_tokens, in_features, out_features, backward=False):
        """A linear layer (one GEMM) over batch_tokens rows: forward
        ``2*T*in*out``; with backward=True the backward's, twice that
        (dX and dW)."""
        t = _count("batch_tokens", batch_tokens)
        i = _count("in_features", in_features)
        o = _count("out_features", out_features)
        f = 2 * t * i * o
        return 2 * f if backward else f

    @staticmethod
    def causal_pairs(q_len, kv_len):
        """The exact number of (query, key) pairs a causal mask allows with
        PyTorch's ``is_causal`` convention, which is aligned to the top left:
        query i sees keys 0..i (``torch.ones(L, S).tril(diagonal=0)`` in the
        documentation of scaled_dot_product_attention).  L <= S:
        ``L*(L+1)/2``; L > S: ``S*(S+1)/2 + (L-S)*S`` (the last L-S queries
        see every key)."""
        L = _count("q_len", q_len)
        S = _count("kv_len", kv_len)
        if L <= S:
            return L * (L + 1) // 2
        return S * (S + 1) // 2 + (L - S) * S

    @staticmethod
    def sdpa(batch, heads, q_len, kv_len, head_dim, causal=False, backward=False, v_head_dim=None):
        """Scaled dot-product attention: QK^T and PV, ``2*B*H*pairs*(Dh+Dv)``
        where pairs are the (query, key) pairs computed; with Dv == Dh this is
        ``4*B*H*Sq*Sk*Dh`` without a mask (doc/metrics.md).

        causal=True (no other mask):
          - Sq == Sk: exactly half, ``2*B*H*S^2*Dh``, the doc/metrics.md
            convention (the same as mfu-synth's), although the mask's exact
            count is S*(S+1)/2 pairs, S/2 more;
          - Sq != Sk: the exact number of pairs PyTorch's top-left-aligned
            ``is_causal`` mask allows, :meth:`causal_pairs`.  (Kernels that
            align the diagonal to the bottom right, such as a KV cache's, see
            a different set; declare those with causal=False and your own
            count.)

        backward=True gives the backward's FLOPs: 2x the forward.
        v_head_dim: the value head dimension when it differs from head_dim.
        """
        b = _count("batch", batch)
        h = _count("heads", heads)
        L = _count("q_len", q_len)
        S = _count("kv_len", kv_len)
        d = _count("head_dim", head_dim)
        dv = d if v_head_dim is None else _count("v_head_dim", v_head_dim)
        if not causal:
            twice_pairs = 2 * L * S
        elif L == S:
            twice_pairs = L * S
        else:
            twice_pairs = 2 * _Flops.causal_pairs(L, S)
        f = b * h * twice_pairs * (d + dv)  # 2 * pairs * (d + dv) per head
        return 2 * f if backward else f

    @staticmethod
    def transformer_forward(batch, seq_len, layers, d_model, heads, d_ff=None, vocab=0,
                            causal=True, kv_heads=None, head_dim=None, gated_mlp=False):
        """Forward FLOPs of a decoder-style transformer: per layer the Q, K, V
        and output projections, self-attention (:meth:`sdpa`, Sq == Sk) and
        the MLP (d_model -> d_ff -> d_model; gated_mlp: two input
        projections, as SwiGLU), then an output projection to vocab (0: none).
        Norms, activations and the softmax are not counted.  head_dim
        defaults to d_model // heads (which must divide), d_ff to 4*d_model,
        kv_heads (grouped-query attention) to heads."""
        B = _count("batch", batch)
        S = _count("seq_len", seq_len)
        n = _count("layers", layers)
        d = _count("d_model", d_model)
        h = _count("heads", heads)
        if h == 0:
            raise ValueError("heads must be > 0")
        if head_dim is None:
            if d % h:
                raise ValueError("d_model %d is not a multiple of heads %d: pass head_dim" % (d, h))
            hd = d // h
        else:
            hd = _count("head_dim", head_dim)
        kvh = h if kv_heads is None else _count("kv_heads", kv_heads)
        ff = 4 * d if d_ff is None else _count("d_ff", d_ff)
        T = B * S
        lin = _Flops.linear
        qkv = lin(T, d, (h + 2 * kvh) * hd)
        out = lin(T, h * hd, d)
        mlp = (2 if gated_mlp else 1) * lin(T, d, ff) + lin(T, ff, d)
        attn = _Flops.sdpa(B, h, S, S, hd, causal=causal)
        return n * (qkv + out + mlp + attn) + lin(T, d, _count("vocab", vocab))

    @staticmethod
    def transformer_step(*args, **kwargs):
        """Model FLOPs of one training step of :meth:`transformer_forward`
        (same arguments): 3x its forward."""
        return training_step_model_flops(_Flops.transformer_forward(*args, **kwargs))


flops = _Flops()


# --------------------------------------------------------------------------
# PyTorch integration
# --------------------------------------------------------------------------

class MissingTorchError(ImportError):
    """mfu.torch.install() was called where PyTorch cannot be imported."""


# Autograd nodes that only reshape, looked through to find the fused
# attention node under the output of scaled_dot_product_attention (the flash
# path slices the output when it padded the head dimension).
_VIEW_NODES = frozenset({
    "SliceBackward0", "ViewBackward0", "TransposeBackward0", "PermuteBackward0",
    "AliasBackward0", "AsStridedBackward0", "UnsafeViewBackward0",
})

# torch dtype names (str(dtype) without "torch.") -> shim class.  float32 is
# left to the model's class: whether fp32 attention runs on CUDA cores or
# TF32-based tensor-core code depends on the kernel chosen.
_TORCH_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}


class _RematOnRecompute:
    """Stands in for the function given to torch.utils.checkpoint: its first
    call is the forward, every later one is a recomputation in backward and
    runs inside mfu_remat_push/pop."""

    __slots__ = ("_fn", "_calls", "__weakref__")

    def __init__(self, fn):
        self._fn = fn
        self._calls = 0

    def __call__(self, *args, **kwargs):
        self._calls += 1
        a = _api
        if self._calls == 1 or a is None:
            return self._fn(*args, **kwargs)
        a.remat_push()
        try:
            return self._fn(*args, **kwargs)
        finally:
            a.remat_pop()


class _TorchState:
    def __init__(self):
        self.lock = threading.Lock()
        self.step_open = False
        self.handles = []       # RemovableHandle-like objects to remove
        self.first_begin = None  # the global forward pre-hook's handle
        self.patched = []       # (module, attribute, original, wrapper)


_torch_state = None


def _torch_install(model_flops_per_step=None, checkpoint=True, sdpa=True, optimizer=None):
    """Instruments a PyTorch training script for the shim.  Call it once,
    before the training loop and before importing libraries that bind
    ``torch.utils.checkpoint.checkpoint`` or
    ``torch.nn.functional.scaled_dot_product_attention`` to a name of their
    own (see Limits).  Returns True when installed, False when no shim is
    active (nothing is changed then).  Raises :class:`MissingTorchError` (an
    ImportError) when PyTorch cannot be imported, RuntimeError when it lacks
    an API used here.  Calling it again replaces the previous installation.
    Written against PyTorch >= 2.4.

    Steps (``optimizer``): every ``optimizer.step()`` ends a step declaring
    ``model_flops_per_step`` (a number, a callable returning one per step,
    or None for the shim's default) and begins the next.  The first step
    begins at the first ``nn.Module`` forward after install().  optimizer=None
    hooks every optimizer (``torch.optim.optimizer.register_optimizer_step_post_hook``);
    an Optimizer instance hooks only that one (``Optimizer.register_step_post_hook``),
    for scripts that step several optimizers per iteration; False marks no
    steps (use :class:`mfu.step` yourself).

    Recomputation (``checkpoint``): ``torch.utils.checkpoint.checkpoint`` is
    replaced by a wrapper that hands it a stand-in for the user function.
    Both variants call that function once for the forward and again for
    each recomputation in backward (reentrant: ``CheckpointFunction.backward``
    reruns it under enable_grad; non-reentrant: the saved-tensor unpack hook
    runs it through ``recompute_fn``), so every call after the first runs
    inside mfu_remat_push/pop, on the thread that recomputes.  With
    non-reentrant early stop the recomputation is cut short by an exception
    that passes through the wrapper; the pop still happens.  The decorator
    form ``checkpoint(use_reentrant=...)(fn)`` of newer PyTorch is handled,
    and ``checkpoint_sequential`` goes through the wrapper because it looks
    ``checkpoint`` up in its module.

    Attention (``sdpa``): ``torch.nn.functional.scaled_dot_product_attention``
    is replaced by a wrapper that, for plain CUDA tensors, pushes a region
    declaring the forward FLOPs from the shapes (q (..., L, E), k (..., S, E),
    v (..., S, Ev): batch x heads = the product of q's leading dimensions,
    ``2*BH*pairs*(E+Ev)``; ``is_causal`` without attn_mask counts the causal
    pairs as :meth:`flops.sdpa` does; an attn_mask counts every pair) and the
    dtype class from q (fp16, bf16, fp64, fp8; under autocast the autocast
    dtype; float32: the model's class), runs the original and pops.  When the
    output requires grad and its autograd node is a fused attention node
    (``ScaledDotProduct*Backward``, looked up through view nodes), a pre-hook
    and a hook on that node (``Node.register_prehook`` / ``Node.register_hook``)
    push and pop a region declaring the backward FLOPs, 2x the forward, around
    the backward kernels.

    Limits:
      - Code that bound these functions to its own name before install()
        (``from torch.utils.checkpoint import checkpoint``,
        ``from torch.nn.functional import scaled_dot_product_attention``, as
        some libraries do at import) keeps the originals.
      - Under ``torch.compile`` (``torch.compiler.is_compiling()``) the
        wrappers call the originals untouched, so compiled regions declare
        no attention FLOPs and compiled recomputation is not marked remat;
        count those through model_flops_per_step.
      - SDPA inputs that are tensor subclasses (DTensor, nested tensors) or
        not on CUDA are not declared: their shapes are not the local work.
      - If SDPA falls back to its math backend (cuBLAS batched GEMMs), the
        shim counts those GEMMs and the declared forward region too: pass
        sdpa=False where the math backend runs.  Its backward is not declared
        (no fused node).
      - The backward region opens in the node's pre-hook: when unpacking that
        node's saved tensors triggers a non-reentrant recomputation, that
        recomputation (inside remat) runs within the open backward region.
        If the node's backward raises, its hook does not run and the region
        stays open on that thread.
      - Steps: a step skipped by ``torch.amp.GradScaler`` (inf/NaN
        gradients) calls no optimizer.step(), so the next step spans two
        iterations; with gradient accumulation a step spans every
        micro-batch up to optimizer.step() and model_flops_per_step must
        cover them all.
      - uninstall() restores the functions and removes the hooks; autograd
        nodes hooked before keep their (balanced) hooks until freed, and an
        open step stays open.
    """
    try:
        T = importlib.import_module("torch")
    except ImportError as e:
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise MissingTorchError("mfu.torch.install() needs PyTorch, which cannot be imported: %s" % detail) from e

    _torch_uninstall()
    if not active():
        return False

    mods = {}
    missing = []
    for name in ("torch.optim.optimizer", "torch.nn.modules.module", "torch.utils.checkpoint",
                 "torch.nn.functional"):
        try:
            mods[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name)
    need = []
    if optimizer is not False:
        need += [("torch.optim.optimizer", "register_optimizer_step_post_hook"),
                 ("torch.nn.modules.module", "register_module_forward_pre_hook")]
    if checkpoint:
        need.append(("torch.utils.checkpoint", "checkpoint"))
    if sdpa:
        need.append(("torch.nn.functional", "scaled_dot_product_attention"))
    for mod, attr in need:
        if mod in mods and not hasattr(mods[mod], attr):
            missing.append(mod + "." + attr)
    if optimizer not in (None, False) and not hasattr(optimizer, "register_step_post_hook"):
        raise TypeError("optimizer must be None, False or a torch.optim.Optimizer")
    if missing:
        raise RuntimeError("mfu.torch.install(): this PyTorch (%s) lacks %s"
                           % (getattr(T, "__version__", "?"), ", ".join(sorted(set(missing)))))
    if model_flops_per_step is not None and not callable(model_flops_per_step):
        _check_flops("model_flops_per_step", model_flops_per_step)

    compiler = getattr(T, "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None) or (lambda: False)

    global _torch_state
    st = _TorchState()
    try:
        if optimizer is not False:
            _install_steps(st, mods, model_flops_per_step, optimizer)
        if checkpoint:
            _patch(st, mods["torch.utils.checkpoint"], "checkpoint",
                   _checkpoint_wrapper(mods["torch.utils.checkpoint"].checkpoint, is_compiling))
        if sdpa:
            _patch(st, mods["torch.nn.functional"], "scaled_dot_product_attention",
                   _sdpa_wrapper(T, mods["torch.nn.functional"].scaled_dot_product_attention, is_compiling))
    except BaseException:
        _undo(st)
        raise
    _torch_state = st
    return True


def _patch(st, module, attr, wrapper):
    original = getattr(module, attr)
    setattr(module, attr, wrapper)
    st.patched.append((module, attr, original, wrapper))


def _undo(st):
    for h in st.handles:
        try:
            h.remove()
        except Exception:  # noqa: BLE001 - removing is best effort
            pass
    st.handles = []
    st.first_begin = None
    for module, attr, original, wrapper in reversed(st.patched):
        if getattr(module, attr, None) is wrapper:  # leave someone else's patch alone
            setattr(module, attr, original)
    st.patched = []


def _torch_uninstall():
    """Undoes :func:`mfu.torch.install`: removes the hooks and restores the
    wrapped functions (a function someone re-patched after install() is left
    as it is).  A step that is open stays open.  Safe to call at any time."""
    global _torch_state
    st, _torch_state = _torch_state, None
    if st is not None:
        _undo(st)


def _torch_installed():
    """Whether mfu.torch.install() is in effect."""
    return _torch_state is not None


def _install_steps(st, mods, model_flops_per_step, optimizer):
    def declared():
        v = model_flops_per_step() if callable(model_flops_per_step) else model_flops_per_step
        return 0.0 if v is None else _check_flops("model_flops_per_step", v)

    def drop_first_begin():
        h, st.first_begin = st.first_begin, None
        if h is not None:
            h.remove()
            if h in st.handles:
                st.handles.remove(h)

    def begin_first(module, inputs):
        # every module forward until the first step begins; cheap after that
        if st.step_open:
            return None
        with st.lock:
            if not st.step_open:
                step_begin()
                st.step_open = True
        return None

    def after_optimizer_step(opt, args, kwargs):
        f = declared()
        with st.lock:
            if st.step_open:
                step_end(f)
            step_begin()
            st.step_open = True
        drop_first_begin()  # outside any module forward: safe to remove

    mm = mods["torch.nn.modules.module"]
    st.first_begin = mm.register_module_forward_pre_hook(begin_first)
    st.handles.append(st.first_begin)
    if optimizer is None:
        st.handles.append(mods["torch.optim.optimizer"].register_optimizer_step_post_hook(after_optimizer_step))
    else:
        st.handles.append(optimizer.register_step_post_hook(after_optimizer_step))


def _checkpoint_wrapper(original, is_compiling):
    @functools.wraps(original)
    def checkpoint(function=None, *args, **kwargs):
        if is_compiling():
            return original(function, *args, **kwargs)
        if function is None and not args:
            # newer PyTorch: checkpoint(use_reentrant=..., ...) returns a decorator
            decorator = original(**kwargs)

            def apply(fn):
                @functools.wraps(fn, updated=())
                def call(*a, **k):
                    return decorator(_RematOnRecompute(fn))(*a, **k)
                return call
            return apply
        return original(_RematOnRecompute(function), *args, **kwargs)
    return checkpoint


def _sdpa_dtype(T, q):
    name = str(q.dtype).rsplit(".", 1)[-1]
    if name == "float32":
        dev = q.device.type
        try:
            if T.is_autocast_enabled(dev):
                name = str(T.get_autocast_dtype(dev)).rsplit(".", 1)[-1]
        except Exception:  # noqa: BLE001 - older signatures: leave it to the model's class
            pass
    cls = _TORCH_DTYPES.get(name)
    if cls is None and name.startswith("float8"):
        cls = "fp8"
    return None if cls is None else cls.encode("ascii")


def _sdpa_forward_flops(q, k, v, args, kwargs):
    qs, ks, vs = tuple(q.shape), tuple(k.shape), tuple(v.shape)
    if len(qs) < 2 or len(ks) < 2 or len(vs) < 2:
        return None
    bh = 1
    for n in qs[:-2]:
        bh *= int(n)
    attn_mask = args[0] if len(args) >= 1 else kwargs.get("attn_mask")
    is_causal = args[2] if len(args) >= 3 else kwargs.get("is_causal", False)
    return flops.sdpa(bh, 1, int(qs[-2]), int(ks[-2]), int(qs[-1]),
                      causal=bool(is_causal) and attn_mask is None, v_head_dim=int(vs[-1]))


_SDPA_NAME = b"scaled_dot_product_attention"
_SDPA_BWD_NAME = b"scaled_dot_product_attention_backward"


def _hook_sdpa_backward(out, bwd_flops, dtype):
    if not getattr(out, "requires_grad", False):
        return
    node = getattr(out, "grad_fn", None)
    for _ in range(4):
        if node is None:
            return
        name = node.name()
        if "ScaledDotProduct" in name:
            break
        if name not in _VIEW_NODES:
            return
        nxt = [fn for fn, _ in node.next_functions if fn is not None]
        if len(nxt) != 1:
            return
        node = nxt[0]
    else:
        return

    def pre(grad_outputs):
        a = _api
        if a is not None:
            if dtype is None:
                a.region_push(_SDPA_BWD_NAME, bwd_flops)
            else:
                a.region_push_dtype(_SDPA_BWD_NAME, bwd_flops, dtype)
        return None

    def post(grad_inputs, grad_outputs):
        a = _api
        if a is not None:
            a.region_pop()
        return None

    node.register_prehook(pre)
    node.register_hook(post)


def _sdpa_wrapper(T, original, is_compiling):
    Tensor = T.Tensor

    @functools.wraps(original)
    def scaled_dot_product_attention(query, key, value, *args, **kwargs):
        a = _api
        if a is None or is_compiling() or type(query) is not Tensor or not query.is_cuda \
                or getattr(query, "is_nested", False):
            return original(query, key, value, *args, **kwargs)
        try:
            fwd = _sdpa_forward_flops(query, key, value, args, kwargs)
            dtype = _sdpa_dtype(T, query)
        except Exception:  # noqa: BLE001 - unusual inputs: declare nothing, never break the model
            fwd = None
        if fwd is None:
            return original(query, key, value, *args, **kwargs)
        fwd = float(fwd)
        if dtype is None:
            a.region_push(_SDPA_NAME, fwd)
        else:
            a.region_push_dtype(_SDPA_NAME, fwd, dtype)
        try:
            out = original(query, key, value, *args, **kwargs)
        finally:
            a.region_pop()
        if T.is_grad_enabled():
            try:
                _hook_sdpa_backward(out, 2.0 * fwd, dtype)
            except Exception:  # noqa: BLE001 - an output we do not understand: no backward region
                pass
        return out
    return scaled_dot_product_attention


class _TorchNamespace:
    """``mfu.torch``: PyTorch integration; torch is imported only inside
    install()."""

    install = staticmethod(_torch_install)
    uninstall = staticmethod(_torch_uninstall)
    installed = staticmethod(_torch_installed)
    MissingTorchError = MissingTorchError

    def __repr__(self):
        return "<mfu.torch namespace>"


torch = _TorchNamespace()


_autobind()
