"""The face's contract: the backing policies are named, and nothing else passes."""

import pytest

from vhdport.disk import base


def test_two_named_policies_sr_directory_first():
    assert base.BACKING_POLICIES == (base.SR_DIRECTORY, base.LOCAL_FILES)
    assert base.SR_DIRECTORY != base.LOCAL_FILES
    for policy in base.BACKING_POLICIES:
        assert base.check_backing(policy) == policy


@pytest.mark.parametrize("policy", [None, "", "local", "LOCAL-FILES", True])
def test_anything_else_is_refused(policy):
    with pytest.raises(ValueError, match="unknown backing policy"):
        base.check_backing(policy)


def test_the_default_of_every_parent_following_method_is_sr_directory():
    """SR safety is what a caller gets without asking, in the contract and in every format."""
    import inspect

    from vhdport import disk

    for cls in [base.DiskFormat] + [type(fmt) for fmt in disk.FORMATS.values()]:
        for name in ("check_file", "info", "snapshot", "relink", "open_chain", "check_chain",
                     "coalesce", "export_raw"):
            params = inspect.signature(getattr(cls, name)).parameters
            assert params["backing"].default == base.SR_DIRECTORY, (cls, name)
