"""The one small exception hierarchy of vhdport.

Every error a user can cause or meet (bad input, broken network, full disk) is a
``VhdportError`` whose message says what went wrong, where (file, member, offset,
URL) and, where it helps, what to do.  Anything else escaping the library is a bug.

Each class carries a ``msg`` template filled from keyword arguments, so callers
raise ``ChecksumError(path=p, what="footer", offset=o, stored=a, computed=b)``
and tests can look at the fields (``err.fields["offset"]``) rather than parse text.
"""


class VhdportError(Exception):
    """Base of all vhdport errors."""

    msg = "{reason}"
    #: a short stable code, used by the XAPI plugin's ErrorDescription
    code = "VHDPORT_ERROR"

    def __init__(self, reason=None, **fields):
        if reason is not None:
            fields["reason"] = reason
        self.fields = fields
        try:
            text = self.msg.format(**fields)
        except (KeyError, IndexError, ValueError):
            text = "{}: {}".format(self.msg, fields)
        super().__init__(text)

    def __getattr__(self, name):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)


# --- VHD format and files -------------------------------------------------


class FormatError(VhdportError):
    """Bytes that are not a valid VHD structure."""

    code = "VHD_FORMAT"
    msg = "{path}: {reason}"

    def __init__(self, reason=None, path="<bytes>", **fields):
        super().__init__(reason, path=path, **fields)


class ChecksumError(FormatError):
    """A structure whose stored checksum does not match its contents."""

    code = "VHD_CHECKSUM"
    msg = ("{path}: {what} checksum mismatch at offset {offset} "
           "(stored 0x{stored:08x}, computed 0x{computed:08x})")


class CorruptError(FormatError):
    """Structurally wrong file (cookie, offsets, sizes, truncation)."""

    code = "VHD_CORRUPT"


class LimitError(VhdportError):
    """A request beyond what XenServer supports (size, depth)."""

    code = "VHD_LIMIT"


class ChainError(VhdportError):
    """Parent missing, wrong uuid, cycle, too deep, or a bad link."""

    code = "VHD_CHAIN"


class ReadOnlyError(VhdportError):
    code = "VHD_READ_ONLY"
    msg = "{path}: opened read-only; open it writable to {action}"


# --- QCOW2 format and files ------------------------------------------------


class Qcow2FormatError(FormatError):
    """Bytes that are not a valid QCOW2 image (a FormatError, so format-blind callers catch it)."""

    code = "QCOW2_FORMAT"


class Qcow2CorruptError(Qcow2FormatError):
    """A QCOW2 structure out of bounds, unaligned, overlapping or inconsistent."""

    code = "QCOW2_CORRUPT"


class Qcow2UnsupportedError(Qcow2FormatError):
    """A valid QCOW2 feature vhdport refuses: encryption, external data file, unknown bits."""

    code = "QCOW2_UNSUPPORTED"


# --- SR, bundles, stores, transfers --------------------------------------


class SRError(VhdportError):
    """A storage repository operation that cannot be done safely."""

    code = "SR_ERROR"


class BundleError(VhdportError):
    """A tar/gzip image bundle that is malformed or unsafe."""

    code = "BUNDLE_ERROR"


class StoreError(VhdportError):
    """The image store failed or refused the request."""

    code = "STORE_ERROR"


class ImageNotFound(StoreError):
    code = "IMAGE_NOT_FOUND"
    msg = "image {image_id} not found in {store}"


class AuthError(StoreError):
    code = "AUTH_FAILED"
    msg = "{store}: token rejected or expired (HTTP 401); get a new token and retry"


class ImageStateError(StoreError):
    code = "IMAGE_STATE"
    msg = "image {image_id} is {status}, expected {expected}"


class TransientStoreError(StoreError):
    """A failure that may go away when retried (timeouts, 5xx, resets)."""

    code = "STORE_TRANSIENT"


class IntegrityError(VhdportError):
    """Data that does not match its recorded size or hash."""

    code = "INTEGRITY"
    msg = "{what} mismatch for {subject}: expected {expected}, got {actual}"


class NoSpaceError(VhdportError):
    code = "NO_SPACE"
    msg = "no space left on device while writing {path}; free space and retry"


class PluginError(VhdportError):
    """Bad arguments given to the XAPI plugin."""

    code = "PLUGIN_ARGS"
