"""Model-based test: random programs of create / snapshot / write / zero / hide / commit /
resize / convert against an in-memory model (one bytearray per file: what reading through it
returns).  After every step each chain reads exactly as the model says, check_image finds no
defect in any file, and qemu-img check agrees on the leaves (when qemu-utils is installed).
"""

import os
import random
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.qcow2.qemu import alone, qemu_img, require_qemu
from vhdport.qcow2 import (Qcow2Chain, Qcow2File, check_image, commit, create, create_snapshot,
                           export_raw, import_raw_stream, local_backing, resize, set_hidden,
                           set_parent)

KiB, MiB = 1024, 1024 * 1024
MAX_CHAINS = 3
MAX_DEPTH = 5

sizes = st.integers(1, 8 * 1024).map(lambda sectors: sectors * 512)        # up to 4 MiB
options = st.sampled_from([dict(cluster_size=512), dict(cluster_size=4096, refcount_bits=1),
                           dict(), dict(cluster_size=16 * KiB, extended_l2=True),
                           dict(version=2), dict(refcount_bits=64, cluster_size=2 * MiB)])
picks = st.integers(0, 1000)


def pattern(seed, length):
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")


class ChainModel(object):
    def __init__(self, path, size):
        self.files = [path]
        self.views = {path: bytearray(size)}
        self.hidden = {path: False}

    @property
    def leaf(self):
        return self.files[-1]


class Qcow2Programs(RuleBasedStateMachine):

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="qcow2-model-")
        self.chains = []
        self.counter = 0

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def _new_path(self):
        self.counter += 1
        return os.path.join(self.dir, "f{}.qcow2".format(self.counter))

    def _chain(self, pick):
        return self.chains[pick % len(self.chains)]

    def _open(self, path, writable=False):
        return Qcow2Chain.open(path, writable=writable, backing=local_backing)

    @initialize(size=sizes, opts=options, fixed=st.booleans())
    def first(self, size, opts, fixed):
        self.create(size, opts, fixed)

    @precondition(lambda self: len(self.chains) < MAX_CHAINS)
    @rule(size=sizes, opts=options, fixed=st.booleans())
    def create(self, size, opts, fixed):
        path = self._new_path()
        create(path, size, preallocate=fixed, **opts)
        self.chains.append(ChainModel(path, size))

    @rule(pick=picks)
    def snapshot(self, pick):
        chain = self._chain(pick)
        if len(chain.files) >= MAX_DEPTH:
            return
        path = self._new_path()
        create_snapshot(path, os.path.basename(chain.leaf))
        chain.views[path] = bytearray(chain.views[chain.leaf])
        chain.hidden[path] = False
        chain.files.append(path)

    @rule(pick=picks, where=st.floats(0, 1), length=st.integers(1, 200 * KiB),
          seed=st.integers(0, 2 ** 32), zero=st.booleans())
    def write(self, pick, where, length, seed, zero):
        chain = self._chain(pick)
        view = chain.views[chain.leaf]
        if not view:
            return
        offset = int(where * (len(view) - 1))
        length = min(length, len(view) - offset)
        data = bytes(length) if zero else pattern(seed, length)
        with self._open(chain.leaf, writable=True) as handle:
            if zero:
                handle.write_zeroes(offset, length)
            else:
                handle.write(offset, data)
        view[offset:offset + length] = data

    @rule(pick=picks, level=picks, hidden=st.booleans())
    def set_hidden_flag(self, pick, level, hidden):
        chain = self._chain(pick)
        path = chain.files[level % len(chain.files)]
        set_hidden(path, hidden)
        chain.hidden[path] = hidden

    @rule(pick=picks, level=picks)
    def commit_one(self, pick, level):
        """Commit a child into its parent; relink the grandchild (if any); drop the child."""
        chain = self._chain(pick)
        if len(chain.files) < 2:
            return
        index = 1 + level % (len(chain.files) - 1)
        child, parent = chain.files[index], chain.files[index - 1]
        commit(child)
        child_view = chain.views.pop(child)
        parent_view = chain.views[parent]
        if len(child_view) > len(parent_view):
            parent_view.extend(bytes(len(child_view) - len(parent_view)))
        parent_view[:len(child_view)] = child_view
        del chain.hidden[child]
        if index + 1 < len(chain.files):
            set_parent(chain.files[index + 1], os.path.basename(parent))
        os.unlink(child)
        del chain.files[index]

    @rule(pick=picks, grow=st.integers(0, 4096).map(lambda sectors: sectors * 512))
    def resize_leaf(self, pick, grow):
        chain = self._chain(pick)
        view = chain.views[chain.leaf]
        resize(chain.leaf, len(view) + grow)
        view.extend(bytes(grow))

    @rule(pick=picks)
    def export_then_import(self, pick):
        chain = self._chain(pick)
        raw = os.path.join(self.dir, "export.raw")
        export_raw(chain.leaf, raw, backing=local_backing)
        try:
            with open(raw, "rb") as f:
                assert f.read() == chain.views[chain.leaf]
            if len(self.chains) < MAX_CHAINS:
                path = self._new_path()
                with open(raw, "rb") as f:
                    import_raw_stream(f, path, len(chain.views[chain.leaf]), cluster_size=4096)
                model = ChainModel(path, 0)
                model.views[path] = bytearray(chain.views[chain.leaf])
                self.chains.append(model)
        finally:
            os.unlink(raw)

    @invariant()
    def leaves_read_as_modelled(self):
        for chain in self.chains:
            with self._open(chain.leaf) as handle:
                assert handle.paths() == list(reversed(chain.files))
                assert handle.read(0, handle.virtual_size) == chain.views[chain.leaf]

    @invariant()
    def files_pass_check(self):
        for chain in self.chains:
            for path in chain.files:
                found = check_image(path)
                assert found == [], "\n".join(str(d) for d in found)

    @invariant()
    def qemu_agrees(self):
        require_qemu()              # skips, or fails under CI=true, without qemu-utils
        for chain in self.chains:
            qemu_img("check", "-q", "json:" + alone(chain.leaf))

    @invariant()
    def hidden_flags_as_set(self):
        for chain in self.chains:
            for path in chain.files:
                with Qcow2File.open(path) as image:
                    assert image.hidden == chain.hidden[path]


Qcow2Programs.TestCase.settings = settings(
    max_examples=20, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestQcow2Programs = Qcow2Programs.TestCase
