"""Model-based test: random programs of create / snapshot / write / hide / coalesce / import /
export against an in-memory model (one bytearray per file: what reading through it returns).

After every step each chain reads, through its leaf, exactly as the model says, and
check_chain finds no defect.
"""

import os
import random
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vhdport.vhd import (Chain, VhdFile, coalesce, create_dynamic, create_fixed, create_snapshot,
                         export_raw, import_raw_stream, set_hidden, set_parent)
from vhdport.vhd.check import check_chain

KiB, MiB = 1024, 1024 * 1024
MAX_CHAINS = 3
MAX_DEPTH = 6

sizes = st.integers(1, 8 * 1024).map(lambda sectors: sectors * 512)        # up to 4 MiB
block_sizes = st.sampled_from([64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, MiB, 2 * MiB])
picks = st.integers(0, 1000)       # index into whatever list exists at that moment


def pattern(seed, length):
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")


class ChainModel(object):
    """Files of one chain, base first, each with the bytes it reads as and its hidden flag."""

    def __init__(self, path, size):
        self.files = [path]
        self.views = {path: bytearray(size)}
        self.hidden = {path: False}

    @property
    def leaf(self):
        return self.files[-1]


class VhdPrograms(RuleBasedStateMachine):

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="vhd-model-")
        self.chains = []
        self.counter = 0

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def _new_name(self):
        self.counter += 1
        return "f{}.vhd".format(self.counter)

    def _chain(self, pick):
        return self.chains[pick % len(self.chains)]

    # ----------------------------------------------------------------- rules

    @initialize(size=sizes, block_size=block_sizes, fixed=st.booleans())
    def first(self, size, block_size, fixed):
        self.create(size, block_size, fixed)

    @precondition(lambda self: len(self.chains) < MAX_CHAINS)
    @rule(size=sizes, block_size=block_sizes, fixed=st.booleans())
    def create(self, size, block_size, fixed):
        path = os.path.join(self.dir, self._new_name())
        if fixed:
            create_fixed(path, size)
        else:
            create_dynamic(path, size, block_size=block_size)
        self.chains.append(ChainModel(path, size))

    @rule(pick=picks, block_size=block_sizes)
    def snapshot(self, pick, block_size):
        chain = self._chain(pick)
        if len(chain.files) >= MAX_DEPTH:
            return
        name = self._new_name()
        path = os.path.join(self.dir, name)
        create_snapshot(path, os.path.basename(chain.leaf), block_size=block_size)
        chain.views[path] = bytearray(chain.views[chain.leaf])
        chain.hidden[path] = False
        chain.files.append(path)

    @rule(pick=picks, where=st.floats(0, 1), length=st.integers(1, 300 * KiB),
          seed=st.integers(0, 2 ** 32), crossing=st.booleans())
    def write(self, pick, where, length, seed, crossing):
        chain = self._chain(pick)
        view = chain.views[chain.leaf]
        offset = int(where * (len(view) - 1))
        if crossing:      # start just before a 64 KiB boundary: crosses blocks of every size
            offset = max(0, min(len(view) - 1, (offset // (64 * KiB) + 1) * 64 * KiB - 7))
        length = min(length, len(view) - offset)
        data = pattern(seed, length)
        with Chain.open(chain.leaf, writable=True) as handle:
            handle.write(offset, data)
        view[offset:offset + length] = data

    @rule(pick=picks, writes=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 5000),
                                                st.integers(0, 2 ** 32)), min_size=2, max_size=6))
    def scatter(self, pick, writes):
        """Small writes close together: several present runs inside one block."""
        chain = self._chain(pick)
        view = chain.views[chain.leaf]
        base = int(writes[0][0] * len(view))
        with Chain.open(chain.leaf, writable=True) as handle:
            for where, length, seed in writes:
                offset = min(len(view) - 1, base + int(where * 128 * KiB))
                length = min(length, len(view) - offset)
                data = pattern(seed, length)
                handle.write(offset, data)
                view[offset:offset + length] = data

    @rule(pick=picks, level=picks, hidden=st.booleans())
    def set_hidden_flag(self, pick, level, hidden):
        chain = self._chain(pick)
        path = chain.files[level % len(chain.files)]
        set_hidden(path, hidden)
        chain.hidden[path] = hidden

    @rule(pick=picks, level=picks)
    def coalesce_one(self, pick, level):
        """Coalesce a child into its parent; relink the grandchild (if any); drop the child."""
        chain = self._chain(pick)
        if len(chain.files) < 2:
            return
        index = 1 + level % (len(chain.files) - 1)
        child, parent = chain.files[index], chain.files[index - 1]
        assert os.path.samefile(coalesce(child), parent)
        chain.views[parent] = chain.views.pop(child)
        del chain.hidden[child]
        if index + 1 < len(chain.files):
            set_parent(chain.files[index + 1], os.path.basename(parent))
        os.unlink(child)
        del chain.files[index]
        with Chain.open(parent) as handle:
            assert handle.read(0, handle.virtual_size) == chain.views[parent]

    @rule(pick=picks, where=st.floats(0, 1), length=st.integers(0, 70 * KiB))
    def read_unaligned(self, pick, where, length):
        chain = self._chain(pick)
        view = chain.views[chain.leaf]
        offset = int(where * len(view))
        length = min(length, len(view) - offset)
        with Chain.open(chain.leaf) as handle:
            assert handle.read(offset, length) == view[offset:offset + length]

    @rule(pick=picks)
    def export_then_import(self, pick):
        chain = self._chain(pick)
        raw = os.path.join(self.dir, "export.raw")
        export_raw(chain.leaf, raw)
        try:
            with open(raw, "rb") as f:
                assert f.read() == chain.views[chain.leaf]
            if len(self.chains) < MAX_CHAINS:
                path = os.path.join(self.dir, self._new_name())
                with open(raw, "rb") as f:
                    import_raw_stream(f, path, len(chain.views[chain.leaf]), block_size=256 * KiB)
                model = ChainModel(path, 0)
                model.views[path] = bytearray(chain.views[chain.leaf])
                self.chains.append(model)
        finally:
            os.unlink(raw)

    # ------------------------------------------------------------ invariants

    @invariant()
    def leaves_read_as_modelled(self):
        for chain in self.chains:
            with Chain.open(chain.leaf) as handle:
                assert handle.paths() == list(reversed(chain.files))
                assert handle.read(0, handle.virtual_size) == chain.views[chain.leaf]

    @invariant()
    def chains_pass_check(self):
        for chain in self.chains:
            found = check_chain(chain.leaf)
            assert found == [], "\n".join(str(d) for d in found)

    @invariant()
    def hidden_flags_as_set(self):
        for chain in self.chains:
            for path in chain.files:
                with VhdFile.open(path) as disk:
                    assert disk.hidden == chain.hidden[path]


VhdPrograms.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestVhdPrograms = VhdPrograms.TestCase
