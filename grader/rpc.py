"""The grader side of trusted grading: stand-ins for the learner's objects.

``Connection.lookup("scaled_dot_product_attention")`` returns a :class:`RemoteObject`;
calling it, reading its attributes, indexing or iterating it sends a request to the
kernel (``rpc_worker.py``) and returns what came back: plain data (see ``wire.py``),
checked on arrival, or another ``RemoteObject``. So ``check(piece, proxy)`` runs the
engine's cases, and their comparisons, here, where no learner code ever ran.

Calls are by value: an argument that is not plain data (a model, an optimizer) is
pickled to the kernel (the grader's own objects; the kernel may unpickle them), and what
the call changed in it (parameters, gradients, optimizer state, tensors modified in place)
is copied back. A tensor returned with a graph behind it takes part in ``backward()``:
the gradient is sent to the kernel, which back-propagates there and returns the gradients
of the arguments.
"""
from __future__ import annotations

import builtins
import dataclasses
import importlib
import os
import pickle
import re
import socket
import tempfile
import time
import types
from typing import Any, Callable

import torch

from . import wire

try:  # closures and lambdas from the case modules, too
    import cloudpickle as _pickler
except ImportError:  # pragma: no cover
    _pickler = pickle  # type: ignore[assignment]

#: Seconds a kernel gets to answer after it was interrupted at a time limit.
RECOVERY_S = 5.0


class GradingLimit(Exception):
    """A limit of the grading itself (time, a dead kernel); ``grader_reason`` is the feedback."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.grader_reason = reason


class RemoteError(Exception):
    """An exception of a non-builtin type raised by the learner's code (subclassed per type name)."""


_ERROR_TYPES: dict[str, type] = {}


def _remote_exception(info: dict) -> Exception:
    name = str(info.get("type", "Error"))
    message = str(info.get("message", ""))
    cls = getattr(builtins, name, None) if info.get("builtin") is True else None
    err: Exception | None = None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            err = cls(message)
        except Exception:
            err = None
    if err is None:
        safe = re.sub(r"\W", "_", name) or "Error"
        if safe[0].isdigit():
            safe = "_" + safe
        err = _ERROR_TYPES.setdefault(safe, type(safe, (RemoteError,), {}))(message)
    err.learner_frame = str(info.get("where", ""))  # type: ignore[attr-defined]
    return err


#: Special attributes a case may read from a learner's class (``cls.__mro__``, ``cls.__name__``).
_FORWARDED_DUNDERS = {"__name__", "__qualname__", "__module__", "__mro__"}


class RemoteObject:
    """An object that lives in the learner's kernel; see the module docstring."""

    __slots__ = ("_conn", "_id", "_type")

    def __init__(self, conn: "Connection", handle: int, type_name: str):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_id", handle)
        object.__setattr__(self, "_type", type_name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._conn.request("call", self._id, args=args, kwargs=kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name not in _FORWARDED_DUNDERS:
            raise AttributeError(name)
        return self._conn.request("getattr", self._id, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._conn.request("setattr", self._id, name=name, value=value)

    def __getitem__(self, key: Any) -> Any:
        return self._conn.request("getitem", self._id, key=key)

    def __len__(self) -> int:
        n = self._conn.request("len", self._id)
        if type(n) is not int or n < 0:
            raise TypeError("__len__ did not return a non-negative int")
        return n

    def __iter__(self) -> "RemoteObject":
        it = self._conn.request("iter", self._id)
        if not isinstance(it, RemoteObject):
            raise TypeError("__iter__ did not return an iterator")
        return it

    def __next__(self) -> Any:
        return self._conn.request("next", self._id)

    def __repr__(self) -> str:
        return f"<{self._type} object in the submission>"

    # --- what llm_course.checks.remote asks of the kernel (found on the class, never forwarded)
    def grader_map(self, calls: list[tuple[tuple, dict]]) -> list:
        """``[self(*a, **k) for a, k in calls]`` in one round trip."""
        if calls and all(c is calls[0] for c in calls):  # one call n times: send it once
            value = self._conn.request("map", self._id, calls=[calls[0]], repeat=len(calls))
        else:
            value = self._conn.request("map", self._id, calls=[(tuple(a), dict(k)) for a, k in calls])
        if type(value) is not list or len(value) != len(calls):
            raise wire.WireError("map returned the wrong number of results")
        return value

    def grader_rng(self, state: torch.Tensor | None = None) -> torch.Tensor:
        """The kernel's global torch RNG state (set to ``state`` first, if given)."""
        value = self._conn.request("rng", None, **({"value": state} if state is not None else {}))
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
            raise wire.WireError("the RNG state is not a uint8 vector")
        return value

    def grader_same(self, given: Any) -> bool:
        """Is this the kernel's copy of ``given``, an object the grader sent it by value?"""
        handle = self._conn.kernel_copies.get(id(given), (None, None))[1]
        return handle is not None and self._conn.request("same", self._id, other=handle) is True

    def grader_tempdir(self) -> "tempfile.TemporaryDirectory[str]":
        """A temporary folder the kernel sees at the same path (it has its own /tmp): in the
        folder holding our socket, the kernel's working folder. Made here, not named by it."""
        return tempfile.TemporaryDirectory(prefix=".grader-", dir=self._conn.shared_dir)

    def grader_call_failing_save(self, *args: Any, **kwargs: Any) -> Any:
        """Call it while ``torch.save`` crashes part-way (the worker installs the crash)."""
        return self._conn.request("call", self._id, args=args, kwargs=kwargs, failsave=True)


_REMOTE_TYPES: dict[tuple[str, type | None], type] = {}


def _remote_type(name: str, torch_cls: type | None = None) -> type:
    """A RemoteObject subclass named like the learner's type, so messages say "got Foo".

    For an object of one of torch's own classes (``nn.Linear``), ``isinstance(proxy,
    nn.Linear)`` holds, so structural checks work; its behaviour is still only what the
    kernel answers.
    """
    safe = re.sub(r"\W", "_", name)[:wire.MAX_TYPE_NAME] or "object"
    if safe[0].isdigit():
        safe = "_" + safe
    key = (safe, torch_cls)
    if key not in _REMOTE_TYPES:
        body: dict[str, Any] = {"__slots__": ()}
        if torch_cls is not None:
            body["__class__"] = property(lambda self: torch_cls)
        _REMOTE_TYPES[key] = type(safe, (RemoteObject,), body)
    return _REMOTE_TYPES[key]


def _torch_class(spec: Any) -> type | None:
    module_name, _, qualname = str(spec).partition(":")
    if not module_name.startswith("torch.") or not qualname.replace(".", "").isidentifier():
        return None
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, type) and not issubclass(obj, torch.Tensor) else None


class _RemoteGrad(torch.autograd.Function):
    """Identity on a returned tensor whose backward runs in the kernel."""

    @staticmethod
    def forward(ctx, value, conn, call_id, handle, anchor, *inputs):  # type: ignore[override]
        ctx.conn, ctx.call_id, ctx.handle, ctx.n = conn, call_id, handle, len(inputs)
        ctx.shapes = [t.shape for t in inputs]
        return value.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        grads = ctx.conn.backward(ctx.call_id, ctx.handle, grad)
        out = []
        for shape, (ok, g) in zip(ctx.shapes, grads):
            out.append(g if ok and isinstance(g, torch.Tensor) and g.shape == shape else None)
        return (None, None, None, None, None, *out)


class Connection:
    """One session with the kernel: requests, a time limit, and the handles' lifetime."""

    def __init__(self, sock: socket.socket, deadline: float, interrupt: Callable[[], None],
                 withheld: frozenset[str] = frozenset()):
        self.sock = sock
        try:  # our socket's folder (the grader bound it there): the kernel's working folder
            self.shared_dir: str | None = os.path.dirname(sock.getsockname()) or None
        except (OSError, TypeError):
            self.shared_dir = None
        # one torch thread while we take turns with the kernel (see rpc_worker.serve); restored by close()
        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self.withheld = withheld  # "llm_course.module:Name" whose code the kernel does not have
        self.deadline = deadline
        self.interrupt = interrupt
        self.dead = ""
        self.limit_hit = ""
        # the limit is on the kernel's time: seconds spent here (references, comparisons,
        # callbacks) are the grader's, not the learner's
        self.budget = deadline - time.monotonic()
        self.kernel_s = 0.0
        # grader objects sent by value: id -> (object, handle of its latest copy in the kernel)
        self.kernel_copies: dict[int, tuple[Any, int]] = {}
        # containers given to a call that returned a generator, which may still fill them
        self.live: dict[int, list[Any]] = {}
        self._blobs_out: list[bytes] = []
        self._generators: list[torch.Generator] = []
        self._gen_nodes: dict[int, dict] = {}
        self.anchor = torch.zeros((), requires_grad=True)
        self.calls: dict[int, list[torch.Tensor]] = {}
        self.callbacks: list[Callable[..., Any]] = []
        self._readable: set[int] = set()  # callbacks whose attributes the kernel may read (gobj)
        # copies of the kernel's parameters/buffers: (tensor, its state when it arrived, kernel handle)
        self.copies: list[tuple[torch.Tensor, tuple, int]] = []

    # --- public --------------------------------------------------------------------------
    def lookup(self, name: str) -> Any:
        return self.request("lookup", None, name=name)

    def request(self, op: str, handle: int | None, **fields: Any) -> Any:
        self._write_back()
        blobs: list[bytes] = []
        self._blobs_out, self._generators = blobs, []
        generators = self._generators
        objs: list[Any] = []
        sent: list[torch.Tensor] = []
        req: dict[str, Any] = {"op": op, "id": handle}
        self._gen_nodes = {}
        for key in ("args", "kwargs", "value", "key", "calls"):
            if key in fields:
                value = fields[key]
                if key == "args":
                    value = tuple(value)
                req[key] = wire.encode(value, blobs, lambda o: self._outgoing(o, objs),
                                       lambda t, node: sent.append(t))
        if "name" in fields:
            req["name"] = str(fields["name"])
        if type(fields.get("other")) is int:
            req["other"] = fields["other"]
        if type(fields.get("repeat")) is int:
            req["repeat"] = fields["repeat"]
        if fields.get("failsave") is True:
            req["failsave"] = True
        if objs:
            try:  # the grader's own objects (models, closures): the kernel may unpickle them
                blobs.append(self._pickle(objs))
            except Exception as e:
                raise TypeError(f"the grader cannot send {[type(o).__name__ for o in objs]} to the kernel: {e}") from None
            req["objs"] = len(blobs) - 1
            grads = [{n: p.grad for n, p in o.named_parameters()} if isinstance(o, torch.nn.Module) else None
                     for o in objs]
            req["objgrads"] = wire.encode(grads, blobs, self._refuse)
        reply, rblobs = self._roundtrip(req, blobs)
        if "live" in reply:  # even after an error: a generator may fill them up to its end
            self._apply_live(self._decode(reply["live"], rblobs, None))
        if not reply.get("ok"):
            info = reply.get("error")
            raise _remote_exception(info if isinstance(info, dict) else {})
        given = [*fields.get("args", ()), *fields.get("kwargs", {}).values()]
        if op == "call" and "containers" in reply:
            self._apply_containers(self._decode(reply["containers"], rblobs, None), given)
        if op == "call" and type(reply.get("live_id")) is int:
            self.live = {k: v for k, v in list(self.live.items())[-3:]}  # as many as the kernel keeps
            self.live[reply["live_id"]] = given
        refs = reply.get("objrefs")
        if type(refs) is list and len(refs) == len(objs):
            for obj, ref in zip(objs, refs):
                if type(ref) is int:
                    self.kernel_copies[id(obj)] = (obj, ref)  # (the object is kept alive: ids stay unique)
        call_id = reply.get("call")
        if type(call_id) is int:
            self.calls[call_id] = sent
            if "sync" in reply:
                self._apply_sync(self._decode(reply["sync"], rblobs, None), objs, sent, generators)
        return self._decode(reply.get("value"), rblobs, call_id if type(call_id) is int else None)

    def backward(self, call_id: int, handle: int, grad: torch.Tensor) -> list[tuple[bool, Any]]:
        value = self.request_raw({"op": "backward", "call": call_id, "out": handle}, grad)
        sent = self.calls.get(call_id, [])
        if type(value) is not list or len(value) != len(sent):
            raise wire.WireError("backward returned the wrong number of gradients")
        picked = [(t.requires_grad, g) for t, g in zip(sent, value) if t.requires_grad]
        return picked

    def request_raw(self, req: dict, grad: torch.Tensor) -> Any:
        self._write_back()
        blobs: list[bytes] = []
        req["grad"] = wire.encode(grad, blobs, self._refuse)
        reply, rblobs = self._roundtrip(req, blobs)
        if not reply.get("ok"):
            info = reply.get("error")
            raise _remote_exception(info if isinstance(info, dict) else {})
        return self._decode(reply.get("value"), rblobs, None)

    def close(self) -> None:
        if not self.dead:
            try:
                self.sock.settimeout(RECOVERY_S)
                wire.send(self.sock, {"op": "bye"}, [])
                wire.recv(self.sock)
            except Exception:
                pass
        self.sock.close()
        torch.set_num_threads(self._threads)

    # --- internals -----------------------------------------------------------------------
    def _apply_live(self, live: Any) -> None:
        if type(live) is not dict:
            raise wire.WireError("malformed live containers")
        for key, new in live.items():
            if key in self.live:
                _apply_containers_impl(new, self.live[key])

    @staticmethod
    def _apply_containers(new: Any, originals: list[Any]) -> None:
        """Copy back what the call did to the dicts/lists it was given (they went by value)."""
        _apply_containers_impl(new, originals)

    def _write_back(self) -> None:
        """Send in-place changes the grader made to copies of the kernel's parameters.

        ``p.copy_(value)`` under ``no_grad``, ``p.grad = ...``, ``p.requires_grad_(False)`` on
        ``module.weight`` changed our copy; the kernel's tensor gets the same change before
        anything else is asked of it (parameters travel by value, like the arguments).
        """
        for i, (t, state, src) in enumerate(self.copies):
            now = _state(t)
            if now != state:
                self.copies[i] = (t, now, src)
                blobs: list[bytes] = []
                node = wire.encode((t.detach(), t.grad, t.requires_grad), blobs, self._refuse)
                reply, rblobs = self._roundtrip({"op": "writeback", "id": src, "value": node}, blobs)
                if not reply.get("ok"):
                    info = reply.get("error")
                    raise _remote_exception(info if isinstance(info, dict) else {})
    def _roundtrip(self, req: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        if self.dead:
            raise GradingLimit(self.dead)
        if self.budget - self.kernel_s <= 0:
            self.limit_hit = self.limit_hit or "ran past the time limit for this cell"
            raise GradingLimit(self.limit_hit)
        start = time.monotonic()
        try:
            self.sock.settimeout(max(0.01, self.budget - self.kernel_s))
            wire.send(self.sock, req, blobs)
            while True:
                self.sock.settimeout(max(0.01, self.budget - self.kernel_s - (time.monotonic() - start)))
                reply, rblobs = wire.recv(self.sock)
                if reply.get("op") != "callback":
                    self.kernel_s += time.monotonic() - start
                    return reply, rblobs
                self.kernel_s += time.monotonic() - start
                self._serve_callback(reply, rblobs)  # our time, not the kernel's
                start = time.monotonic()
        except socket.timeout:
            self.kernel_s += time.monotonic() - start
        except (ConnectionError, OSError, wire.WireError, ValueError) as e:
            self.dead = f"the kernel stopped answering ({type(e).__name__}: it crashed, exited or broke the protocol)"
            raise GradingLimit(self.dead) from None
        # over the time limit: interrupt the learner's code and wait briefly for the reply
        self.limit_hit = "ran past the time limit for this cell and was interrupted"
        self.interrupt()
        try:
            self.sock.settimeout(RECOVERY_S)
            wire.recv(self.sock)
        except Exception:
            self.dead = "ran past the time limit and the kernel did not respond to the interrupt"
            raise GradingLimit(self.dead) from None
        raise GradingLimit(self.limit_hit)

    def _outgoing(self, obj: Any, objs: list[Any]) -> dict:
        if isinstance(obj, RemoteObject):
            if object.__getattribute__(obj, "_conn") is not self:
                raise TypeError("a RemoteObject from another session")
            return {"t": "ref", "id": object.__getattribute__(obj, "_id")}
        if isinstance(obj, torch.Generator) and obj.device.type == "cpu":
            # by value, as its state (cheaper than pickling); the kernel's draws are synced back.
            # Sent once per request however often it appears: one object there too
            if id(obj) not in self._gen_nodes:
                self._generators.append(obj)
                self._gen_nodes[id(obj)] = {"t": "generator",
                                            "state": wire.encode_tensor(obj.get_state(), self._blobs_out)}
            return self._gen_nodes[id(obj)]
        if isinstance(obj, torch.nn.Module) and self._withheld_class(obj):
            return {"t": "gmod", "id": self._grader_module(obj), "training": obj.training}
        if self._withheld_class(obj):
            # an instance of a reference class the kernel cannot run (the KVCache a case passes
            # in): it stays here; the kernel's stand-in reads attributes and calls methods back
            self.callbacks.append(obj)
            self._readable.add(len(self.callbacks) - 1)
            return {"t": "gobj", "id": len(self.callbacks) - 1}
        if isinstance(obj, types.GeneratorType):
            # a case's source of pieces: the kernel pulls each item from here, so the case
            # sees how far the learner's code read it
            self.callbacks.append(obj.__next__)
            return {"t": "giter", "id": len(self.callbacks) - 1}
        if callable(obj) and not isinstance(obj, (type, torch.nn.Module)):
            # a case's helper (a model's prob function...) runs here when the learner calls it:
            # the reference code it may use is withheld in the kernel
            self.callbacks.append(obj)
            return {"t": "gref", "id": len(self.callbacks) - 1}
        objs.append(obj)
        return {"t": "obj", "i": len(objs) - 1}

    def _withheld_class(self, obj: Any) -> bool:
        return f"{type(obj).__module__}:{type(obj).__qualname__}" in self.withheld

    def _grader_module(self, module: torch.nn.Module) -> int:
        """A reference layer the kernel cannot run (its code is withheld there) stays here;
        the kernel gets a stand-in module whose forward calls back."""
        self.callbacks.append(module)
        return len(self.callbacks) - 1

    def _pickle(self, objs: list[Any]) -> bytes:
        """Pickle the grader's objects; withheld layers inside them become call-back stand-ins."""
        import io

        conn = self

        class Pickler(_pickler.Pickler):  # type: ignore[name-defined,misc]
            def persistent_id(self, obj: Any) -> Any:
                if isinstance(obj, torch.nn.Module) and conn._withheld_class(obj):
                    return ("gmod", conn._grader_module(obj), obj.training)
                return None

        buf = io.BytesIO()
        Pickler(buf).dump(objs)
        return buf.getvalue()

    def _serve_callback(self, req: dict, blobs: list[bytes]) -> None:
        """The learner's code called one of our functions: run it here, send the result back."""
        out: list[bytes] = []
        objs: list[Any] = []
        # the reply is a message of its own: its generators and blobs are not the request's
        saved = self._blobs_out, self._generators, self._gen_nodes
        self._blobs_out, self._generators, self._gen_nodes = out, [], {}
        try:
            fn = self.callbacks[req["id"]] if type(req.get("id")) is int else None
            if fn is None:
                raise wire.WireError("unknown callback")
            args, kwargs = self._decode(req.get("args"), blobs, None), self._decode(req.get("kwargs"), blobs, None)
            if type(args) is not tuple or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
                raise wire.WireError("malformed callback arguments")
            if req.get("method") == "train" and isinstance(fn, torch.nn.Module):
                fn.train(bool(args[0]) if args else True)
                value = None
            elif req.get("method") == "getattr":  # only of a withheld object's stand-in
                if req["id"] not in self._readable or len(args) != 1 or type(args[0]) is not str \
                        or args[0].startswith("_"):
                    raise AttributeError(str(args[0])[:60] if args else "")
                value = getattr(fn, args[0])
            else:
                value = fn(*args, **kwargs)
            reply: dict[str, Any] = {"ok": True, "value": wire.encode(value, out, lambda o: self._outgoing(o, objs))}
            if objs:
                out.append(self._pickle(objs))
                reply["objs"] = len(out) - 1
        except wire.WireError:
            raise
        except Exception as err:
            out = []
            reply = {"ok": False, "error": {"type": type(err).__name__, "message": str(err)[:2000]}}
        finally:
            self._blobs_out, self._generators, self._gen_nodes = saved
        wire.send(self.sock, reply, out)

    @staticmethod
    def _refuse(obj: Any) -> dict:
        raise TypeError(f"cannot send {type(obj).__name__}")

    def _decode(self, node: Any, blobs: list[bytes], call_id: int | None) -> Any:
        def on_tag(n: dict, sub: Callable[[Any], Any]) -> Any:
            tag = n.get("t")
            if tag == "ref":
                if type(n.get("id")) is not int:
                    raise wire.WireError("malformed ref")
                name = str(n.get("type", "object"))[:60]
                return _remote_type(name, _torch_class(n.get("torch")) if "torch" in n else None)(self, n["id"], name)
            if tag == "dataclass":
                return _dataclass(n, sub)
            raise wire.WireError(f"unexpected tag {str(tag)[:20]!r}")

        def on_tensor(t: torch.Tensor, n: dict) -> torch.Tensor:
            grad = n.get("grad")
            if grad is not None and t.is_leaf:
                g = wire.decode_tensor(grad, blobs) if type(grad) is dict else None
                if g is not None and g.shape == t.shape and g.dtype == t.dtype:
                    t.grad = g
            if type(n.get("src")) is int:
                self.copies.append((t, _state(t), n["src"]))
            handle = n.get("h")
            if type(handle) is int and call_id is not None and n.get("rg") is True and not n.get("param"):
                inputs = [x for x in self.calls.get(call_id, []) if x.requires_grad]
                return _RemoteGrad.apply(t.detach(), self, call_id, handle, self.anchor, *inputs)
            return t

        return wire.decode(node, blobs, on_tag, on_tensor)

    def _apply_sync(self, sync: Any, objs: list[Any], sent: list[torch.Tensor],
                    generators: list[torch.Generator]) -> None:
        if type(sync) is not dict:
            raise wire.WireError("malformed sync")
        states = sync.get("generators") or []
        for gen, state in zip(generators, states if type(states) is list else []):
            if isinstance(state, torch.Tensor) and state.dtype == torch.uint8:
                gen.set_state(state)
        states = sync.get("objs") or []
        for obj, state in zip(objs, states if type(states) is list else []):
            if type(state) is not dict:
                continue
            if isinstance(obj, torch.nn.Module) and type(state.get("state")) is dict:
                _load_module_state(obj, state["state"])
            elif isinstance(obj, torch.optim.Optimizer) and type(state.get("optim")) is dict:
                obj.load_state_dict(state["optim"])
            elif isinstance(obj, torch.Generator) and isinstance(state.get("generator"), torch.Tensor):
                obj.set_state(state["generator"])
        changed = sync.get("tensors") or {}
        for i, value in (changed.items() if type(changed) is dict else []):
            if type(i) is int and 0 <= i < len(sent) and isinstance(value, torch.Tensor) \
                    and value.shape == sent[i].shape:
                with torch.no_grad():
                    sent[i].copy_(value)


def _apply_containers_impl(new: Any, originals: list[Any]) -> None:
    if type(new) is not list or len(new) != len(originals):
        raise wire.WireError("malformed containers")
    for value, original in zip(new, originals):
        if type(original) is dict and type(value) is dict:
            original.clear()
            original.update(value)
        elif type(original) is list and type(value) is list:
            original[:] = value


def _state(t: torch.Tensor) -> tuple:
    return (t._version, id(t.grad), t.grad._version if t.grad is not None else None, t.requires_grad)


def _load_module_state(module: torch.nn.Module, state: dict) -> None:
    """Copy parameters, buffers, requires_grad and gradients the kernel reported."""
    own = dict(module.state_dict(keep_vars=True))
    for name, value in state.items():
        target = own.get(name)
        if not isinstance(target, torch.Tensor) or not isinstance(value, torch.Tensor):
            continue
        if value.shape != target.shape:
            raise ValueError(f"the call changed the shape of {name}")
        with torch.no_grad():
            target.copy_(value)
        if isinstance(target, torch.nn.Parameter):
            target.requires_grad_(value.requires_grad)
            target.grad = value.grad if value.grad is not None and value.grad.shape == target.shape else None


def _dataclass(node: dict, sub: Callable[[Any], Any]) -> Any:
    """An instance of one of the library's own dataclasses (``llm_course.*``), rebuilt here."""
    module_name, _, qualname = str(node.get("cls", "")).partition(":")
    if not module_name.startswith("llm_course.") or not qualname.isidentifier():
        raise wire.WireError("dataclass outside llm_course")
    cls = getattr(importlib.import_module(module_name), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise wire.WireError("not a dataclass")
    fields = sub(node.get("fields"))
    if type(fields) is not dict or set(fields) != {f.name for f in dataclasses.fields(cls)}:
        raise wire.WireError("dataclass fields do not match")
    return cls(**fields)


def worker_source() -> str:
    """The code a kernel runs to serve requests: ``wire.py`` then ``rpc_worker.py``."""
    from pathlib import Path

    here = Path(__file__).parent
    worker = (here / "rpc_worker.py").read_text(encoding="utf-8")
    worker = worker.replace("from grader.wire import", "# (inlined) from grader.wire import")
    return (here / "wire.py").read_text(encoding="utf-8").replace("from __future__ import annotations\n", "") \
        + "\n" + worker
