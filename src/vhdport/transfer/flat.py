"""SR -> store as one flat image (QCOW2 or raw, container bare) that any KVM host boots.

The upload pipeline (:func:`vhdport.transfer.upload`) stages and checks the chain as
for a bundle; this module turns the staged links into the bytes to send.  The image
is streamed from the chain as it is read: no temporary copy in the SR or elsewhere,
and its size is known up front so the store gets a Content-Length.
"""

from .. import disk
from ..errors import StoreError

#: ``--as`` choices: the default bundle keeps the chain's layers, the others flatten it
BUNDLE = "bundle"
AS_FORMATS = (BUNDLE,) + tuple(disk.FLAT_FORMATS)
FLAT_CONTAINER = "bare"


def is_flat(as_format):
    """Whether ``as_format`` asks for a flat image; refuse what is no choice at all."""
    if as_format is None or as_format == BUNDLE:
        return False
    if as_format not in disk.FLAT_FORMATS:
        raise StoreError("cannot upload as {!r}: choose one of {}".format(
            as_format, ", ".join(AS_FORMATS)))
    return True


def check_queued_record(record, as_format):
    """A caller's queued image must already say what is coming: a store (and Glance's format
    inspector) judges the bytes by the record's formats, which vhdport cannot change."""
    have = (record.get("disk_format"), record.get("container_format"))
    if have != (as_format, FLAT_CONTAINER):
        raise StoreError("image {} is recorded as disk_format={} container_format={}, but a "
                         "flat {} upload sends disk_format={} container_format={}; create the "
                         "image with those formats, or upload without an image id".format(
                             record.get("id"), have[0], have[1], as_format, as_format,
                             FLAT_CONTAINER))


class FlatPayload(object):
    """The staged chain opened and flattened; a context manager that closes the files.

    Iterating yields the image's bytes; ``size``, ``disk_format`` and
    ``container_format`` describe it for the store's record.
    """

    def __init__(self, linked, as_format):
        self.linked, self.as_format = list(linked), as_format
        self.chain = self.image = None

    def __enter__(self):
        self.chain = disk.open_files(self.linked)
        try:
            self.image = disk.flat_image(self.chain, self.as_format)
        except BaseException:
            self.chain.close()
            raise
        return self

    def __exit__(self, *exc):
        self.chain.close()

    @property
    def size(self):
        return self.image.size

    @property
    def disk_format(self):
        return self.image.disk_format

    @property
    def container_format(self):
        return self.image.container_format

    def __iter__(self):
        return iter(self.image)
