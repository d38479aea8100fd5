"""The kernel side of trusted grading: serve the grader's requests on the learner's objects.

The grader sends this file (after ``wire.py``) as the code of a silent execute request;
``serve(path, namespace)`` connects to the grader's socket and answers requests until
``bye``, on the kernel's main thread (so an interrupt stops a learner's runaway call).

Requests name an object by handle (or look a name up in the notebook's namespace) and
ask to call it, get/set an attribute or item, iterate it, or back-propagate through a
tensor it returned. Objects that are not plain data stay here behind a handle. The
learner can replace all of this; that changes only the data their code sends back,
which the grader type-checks and judges itself.
"""
import builtins
import dataclasses
import pickle
import socket
import traceback

import torch

from grader.wire import decode, decode_tensor, encode, encode_tensor, recv, send, type_name  # noqa: F401  (inlined when sent)


class _GraderFunction:
    """A function of the grader's (a case's helper) that the learner's code may call: runs there."""

    def __init__(self, worker, handle):
        self._worker, self._handle = worker, handle

    def __call__(self, *args, **kwargs):
        return self._worker.callback(self._handle, args, kwargs)


class _GraderObject:
    """An instance of a withheld class (the reference KVCache) that stays in the grader:
    reading an attribute asks the grader; a method comes back as a _GraderFunction."""

    def __init__(self, worker, handle):
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_handle", handle)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._worker.callback(self._handle, (name,), {}, method="getattr")


class _GraderIterator:
    """An iterator of the grader's (a case's source of pieces): each next() asks the grader,
    so the grader sees how far the learner's code has read it."""

    def __init__(self, worker, handle):
        self._worker, self._handle = worker, handle

    def __iter__(self):
        return self

    def __next__(self):
        return self._worker.callback(self._handle, (), {})


class _GraderModule(torch.nn.Module):
    """A reference layer that stays in the grader (its code is withheld here): forward calls back."""

    def __init__(self, worker, handle, training):
        super().__init__()
        self._worker, self._handle = worker, handle
        self.training = training

    def forward(self, *args, **kwargs):
        return self._worker.callback(self._handle, args, kwargs)

    def train(self, mode=True):
        self.training = mode
        self._worker.callback(self._handle, (mode,), {}, method="train")
        return self


class _Worker:
    def __init__(self, namespace, sock):
        self.ns = namespace
        self.sock = sock
        self.objs = {}
        self.calls = {}  # call id -> the tensors its arguments held (for backward)
        self.counter = 0
        self._op = ""
        # containers (dicts/lists) given to a call that returned a generator: the generator may
        # still change them, so their state goes back with every reply (id -> containers)
        self.live = {}

    def ref(self, obj):
        self.counter += 1
        self.objs[self.counter] = obj
        return self.counter

    # --- values --------------------------------------------------------------------------
    def out(self, value, blobs):
        previous, self._blobs = getattr(self, "_blobs", None), blobs
        try:
            return encode(value, blobs, self.other, self.tensor_extra, loose=True)
        finally:
            self._blobs = previous

    def other(self, obj):
        cls = type(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and cls.__module__.startswith("llm_course."):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            return {"t": "dataclass", "cls": f"{cls.__module__}:{cls.__qualname__}",
                    "fields": self.out(fields, self._blobs)}
        node = {"t": "ref", "id": self.ref(obj), "type": type_name(obj)}
        if cls.__module__.startswith(("torch.", "llm_course.")):  # lets isinstance(x, nn.Linear) work there
            node["torch"] = f"{cls.__module__}:{cls.__qualname__}"
        return node

    def tensor_extra(self, t, node):
        if t.requires_grad and t.grad_fn is not None:
            node["h"] = self.ref(t)  # kept for backward()
        elif self._op != "sync" and t.is_leaf and (t.requires_grad or self._op == "getattr"):
            node["src"] = self.ref(t)  # a parameter or buffer: the grader may write to its copy
        grad = getattr(t, "grad", None) if t.is_leaf else None
        if isinstance(grad, torch.Tensor):
            node["grad"] = encode_tensor(grad, self._blobs)

    def unpickle(self, data):
        worker = self

        class Unpickler(pickle.Unpickler):
            def persistent_load(self, pid):
                return _GraderModule(worker, pid[1], bool(pid[2]))  # ("gmod", handle, training)

        import io
        return Unpickler(io.BytesIO(data)).load()

    def inp(self, node, blobs, objs, seen):
        def on_tag(n, sub):
            if n.get("t") == "ref":
                return self.objs[n["id"]]
            if n.get("t") == "obj":
                return objs[n["i"]]
            if n.get("t") == "gref":
                return _GraderFunction(self, n["id"])
            if n.get("t") == "gmod":
                return _GraderModule(self, n["id"], bool(n.get("training")))
            if n.get("t") == "gobj":
                return _GraderObject(self, n["id"])
            if n.get("t") == "giter":
                return _GraderIterator(self, n["id"])
            if n.get("t") == "generator":
                # one generator per state blob: an argument repeated across the calls of a
                # "map" request is one object here too, as it is in the grader
                gens, key = self._generators, (id(blobs), n["state"]["b"])
                if key not in gens:
                    gen = torch.Generator()
                    gen.set_state(decode_tensor(n["state"], blobs))  # not an argument tensor: not in `seen`
                    gens[key] = gen
                return gens[key]
            raise ValueError(f"unknown tag {n.get('t')!r}")

        def on_tensor(t, n):
            seen.append((t, t._version))
            return t

        return decode(node, blobs, on_tag, on_tensor)

    # --- requests ------------------------------------------------------------------------
    def loop(self, want_reply=False):
        """Answer requests until ``bye`` (or, inside a callback, until the grader's reply)."""
        while True:
            try:
                req, blobs = recv(self.sock)
            except KeyboardInterrupt:  # a time-limit interrupt that arrived between requests
                continue
            except (ConnectionError, OSError):
                return None
            if "op" not in req:
                if want_reply:
                    return req, blobs
                continue
            if req.get("op") == "bye":
                send(self.sock, {"ok": True, "value": None}, [])
                return None
            try:
                reply, out_blobs = self.handle(req, blobs)
            except KeyboardInterrupt:
                reply, out_blobs = {"ok": False, "error": {"type": "GraderTimeout", "builtin": False,
                                                           "message": "interrupted", "where": ""}}, []
            except BaseException as err:  # the learner's exception (SystemExit too) is an answer
                reply, out_blobs = _error(err), []
            if self.live and req.get("op") not in ("writeback", "backward"):
                try:
                    self._op = "sync"
                    reply["live"] = self.out(self.live, out_blobs)
                except Exception:
                    pass
            try:
                send(self.sock, reply, out_blobs)
            except Exception as err:  # e.g. an unencodable value: say so instead of hanging
                send(self.sock, _error(err), [])

    def callback(self, handle, args, kwargs, method=None):
        blobs = []
        send(self.sock, {"op": "callback", "id": handle, "method": method, "args": self.out(tuple(args), blobs),
                         "kwargs": self.out(dict(kwargs), blobs)}, blobs)
        answer = self.loop(want_reply=True)
        if answer is None:
            raise ConnectionError("the grader went away")
        reply, rblobs = answer
        if not reply.get("ok"):
            info = reply.get("error", {})
            cls = getattr(builtins, str(info.get("type")), None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                raise cls(info.get("message", ""))
            raise RuntimeError(f"{info.get('type')}: {info.get('message')}")
        objs = self.unpickle(rblobs[reply["objs"]]) if reply.get("objs") is not None else []
        return self.inp(reply.get("value"), rblobs, objs, [])

    def handle(self, req, blobs):
        out_blobs = []
        live_id = None
        op = self._op = req["op"]
        self._generators = gens = {}
        objs = self.unpickle(blobs[req["objs"]]) if req.get("objs") is not None else []
        seen = []
        for obj, grads in zip(objs, self.inp(req.get("objgrads"), blobs, objs, []) or []):
            if grads is not None:
                for name, p in obj.named_parameters():
                    p.grad = grads.get(name)
        if op == "lookup":
            if req["name"] not in self.ns:
                raise NameError(f"name {req['name']!r} is not defined")
            value = self.ns[req["name"]]
        elif op == "call":
            args = self.inp(req["args"], blobs, objs, seen)
            kwargs = self.inp(req["kwargs"], blobs, objs, seen)
            if req.get("failsave") is True:  # the case simulates a crash inside torch.save
                from llm_course.checks.remote import failing_torch_save
                with failing_torch_save():
                    value = self.objs[req["id"]](*args, **kwargs)
            else:
                value = self.objs[req["id"]](*args, **kwargs)
            # dicts/lists passed in may be filled in by the call (usage["tokens"] += 1): send them back
            containers = [a if type(a) in (dict, list) else None for a in (*args, *kwargs.values())]
            if type(value).__name__ == "generator" and any(c is not None for c in containers):
                self.counter += 1
                self.live = {k: v for k, v in list(self.live.items())[-3:]}  # the last few suffice
                self.live[self.counter] = containers
                live_id = self.counter
        elif op == "map":  # many calls in one request (a case drawing thousands of samples)
            fn, value = self.objs[req["id"]], []
            # arguments by value: each call decodes its own copies (a generator stays one object);
            # "repeat" sends one call to make n times
            for _ in range(req["repeat"] if type(req.get("repeat")) is int else 1):
                value += [fn(*a, **k) for a, k in self.inp(req["calls"], blobs, objs, [])]
        elif op == "rng":  # torch's global RNG state (a checkpoint saves and restores it)
            if req.get("value") is not None:
                torch.set_rng_state(self.inp(req["value"], blobs, objs, seen))
            value = torch.get_rng_state()
        elif op == "same":  # is this object the very one we received as an argument?
            value = self.objs[req["id"]] is self.objs[req["other"]]
        elif op == "getattr":
            value = getattr(self.objs[req["id"]], req["name"])
        elif op == "setattr":
            setattr(self.objs[req["id"]], req["name"], self.inp(req["value"], blobs, objs, seen))
            value = None
        elif op == "getitem":
            value = self.objs[req["id"]][self.inp(req["key"], blobs, objs, seen)]
        elif op == "len":
            value = len(self.objs[req["id"]])
        elif op == "iter":
            value = iter(self.objs[req["id"]])
        elif op == "next":
            value = next(self.objs[req["id"]])
        elif op == "writeback":  # the grader changed its copy of one of our tensors in place
            target, value = self.objs[req["id"]], self.inp(req["value"], blobs, objs, seen)
            with torch.no_grad():
                target.copy_(value[0])
            target.grad = value[1]
            if target.is_floating_point():
                target.requires_grad_(value[2])
            return {"ok": True, "value": None}, out_blobs
        elif op == "backward":
            return self.backward(req, blobs, out_blobs)
        else:
            raise ValueError(f"unknown op {op!r}")
        reply = {"ok": True, "value": self.out(_materialise(value), out_blobs)}
        if op == "call" and live_id is not None:
            reply["live_id"] = live_id
        if objs:  # where the grader's objects are now, for "same"
            self._op = "sync"
            reply["objrefs"] = [self.ref(o) for o in objs]
        if op == "call" and any(c is not None for c in containers):
            self._op = "sync"
            reply["containers"] = self.out(containers, out_blobs)
        generators = list(gens.values())
        if seen or objs or generators:
            self.counter += 1
            self.calls[self.counter] = [t for t, _ in seen]
            reply["call"] = self.counter
            self._op = "sync"  # copied back into the grader's own objects: no handles needed
            reply["sync"] = self.out({**self.sync(objs, seen), "generators": [g.get_state() for g in generators]},
                                     out_blobs)
        return reply, out_blobs

    def sync(self, objs, seen):
        """What the call changed in the grader's objects, to copy back (a call is by value)."""
        states = []
        for obj in objs:
            if isinstance(obj, torch.nn.Module):
                # keep_vars: Parameters travel with requires_grad and .grad
                states.append({"state": dict(obj.state_dict(keep_vars=True))})
            elif isinstance(obj, torch.optim.Optimizer):
                states.append({"optim": obj.state_dict()})
            elif isinstance(obj, torch.Generator):
                states.append({"generator": obj.get_state()})
            else:
                states.append(None)
        changed = {i: t.detach() for i, (t, version) in enumerate(seen) if t._version != version}
        return {"objs": states, "tensors": changed}

    def backward(self, req, blobs, out_blobs):
        out = self.objs[req["out"]]
        grad = self.inp(req["grad"], blobs, [], [])
        inputs = self.calls.get(req["call"], [])
        for t in inputs:
            if t.requires_grad:
                t.grad = None
        torch.autograd.backward(out, grad, retain_graph=True)
        grads = [t.grad if t.requires_grad else None for t in inputs]
        for t in inputs:
            if t.requires_grad:
                t.grad = None
        return {"ok": True, "value": self.out(grads, out_blobs)}, out_blobs


def _materialise(value):
    """``model.parameters()`` and friends: a generator of tensors comes back as a list."""
    if type(value).__name__ == "generator" and getattr(value, "gi_code", None) is not None \
            and value.gi_code.co_filename.endswith(("torch/nn/modules/module.py",)):
        return list(value)
    return value


def _error(err):
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "llm_course" not in f.filename and "/torch/" not in f.filename and f.filename != "<grader-rpc>"]
    where = f"line {frames[-1].lineno}: {frames[-1].line}" if frames and frames[-1].line else ""
    name = type(err).__name__
    builtin = getattr(builtins, name, None) is type(err)
    return {"ok": False, "error": {"type": name[:60], "builtin": builtin, "message": str(err)[:2000], "where": where[:300]}}


def serve(path, namespace):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    # one thread while serving: the grader and this kernel take turns on tiny ops, and idle
    # intra-op threads spinning in one process starve the other (10x slower on 2 cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _Worker(namespace, sock).loop()
    finally:
        torch.set_num_threads(threads)
        sock.close()
