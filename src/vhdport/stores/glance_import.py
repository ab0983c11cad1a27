"""Glance's interoperable image import (glance-direct, copy-image) and multiple stores.

Why: a current cloud may refuse ``PUT /file`` (an import-only policy answers 403) and
take images only as *stage* (``PUT /v2/images/{id}/stage``) then *import*
(``POST /v2/images/{id}/import``), done by Glance in the background; and it may have
several backends, named by ``/v2/info/stores``.  The data still streams once, and the
record after the import is reported with what was sent, for transfer to compare.

The settings live on the GlanceStore (see :func:`configure`); a store never configured
uploads directly, as before.
"""

import json
import logging
import time

from vhdport.errors import ImageStateError, StoreError
from vhdport.stores.base import ACTIVE, QUEUED

log = logging.getLogger("vhdport.stores.glance_import")

DIRECT, AUTO, IMPORT = "direct", "auto", "import"
#: Glance's own stores for staging and tasks; never targets for images
RESERVED_STORES = frozenset(("os_glance_staging_store", "os_glance_tasks_store"))
#: how long an upload waits for the answer to Expect: 100-continue before sending anyway
CONTINUE_WAIT = 5.0
#: default limit for Glance to finish an import after the data is staged
IMPORT_TIMEOUT = 3600.0
#: seconds between two progress notices while Glance imports
NOTICE_EVERY = 15.0


class ImportInfo(object):
    """What a Glance offers: import ``methods``, image ``stores`` (ids) and the ``default``."""

    def __init__(self, methods, stores, default=None):
        self.methods, self.stores, self.default = list(methods), list(stores), default

    def __repr__(self):
        return "ImportInfo(methods={}, stores={}, default={})".format(
            self.methods, self.stores, self.default)


def configure(store, method=AUTO, stores=None, all_stores=False, must_succeed=True,
              timeout=None, notice=None, poll=1.0):
    """How ``store`` (a GlanceStore, API v2) puts data: ``direct``, ``auto`` or ``import``.

    ``auto`` uploads directly but asks first (Expect: 100-continue) and, when the cloud
    refuses direct uploads (403), stages and imports instead.  ``stores`` (ids) or
    ``all_stores`` pick the backends; more than one needs the import workflow.
    ``notice`` (callable taking a line) hears what happens (fallback, progress).
    """
    if method not in (DIRECT, AUTO, IMPORT):
        raise StoreError("unknown upload method {!r}; use direct, auto or import".format(method))
    if getattr(store, "api_version", None) != 2:
        raise StoreError("{}: the import workflow and stores need Glance API v2".format(
            getattr(store, "display", store)))
    store.upload_method = method
    store.target_stores = [s for s in (stores or []) if s]
    store.all_stores = bool(all_stores)
    store.all_stores_must_succeed = bool(must_succeed)
    store.import_timeout = float(timeout or IMPORT_TIMEOUT)
    store.notice = notice
    store.poll_interval = float(poll)
    return store


def configured(store):
    """True when ``store`` should not take the plain direct path of GlanceStore.put."""
    return (getattr(store, "upload_method", DIRECT) != DIRECT
            or bool(getattr(store, "target_stores", None)) or getattr(store, "all_stores", False))


def _say(store, text):
    log.info("%s", text)
    notice = getattr(store, "notice", None)
    if notice is not None:
        notice(text)


def _path(store, image_id):
    from vhdport.stores.glance_common import image_path   # where image ids are checked
    return image_path(image_id)


def discover(store):
    """The import methods and stores ``store`` offers (empty lists when it has none)."""
    http = store._http
    reply = http.request("GET", "/v2/info/import", accept=(404,))
    methods = []
    if reply.status == 200:
        value = (reply.json("import info").get("import-methods") or {}).get("value")
        methods = [m for m in value or [] if isinstance(m, str)]
    reply = http.request("GET", "/v2/info/stores", accept=(404,))
    stores, default = [], None
    if reply.status == 200:
        for entry in reply.json("store info").get("stores") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                continue
            if entry["id"] in RESERVED_STORES:
                continue
            stores.append(entry["id"])
            if str(entry.get("default", "")).lower() == "true":
                default = entry["id"]
    return ImportInfo(methods, stores, default)


def info_from_headers(headers):
    """ImportInfo from the OpenStack-image-import-methods / -store-ids headers of a create."""
    def listed(name):
        return [v.strip() for v in (headers.get(name) or "").split(",") if v.strip()]
    return ImportInfo(listed("OpenStack-image-import-methods"),
                      [s for s in listed("OpenStack-image-store-ids") if s not in RESERVED_STORES])


def _check_stores(store, info, wanted):
    unknown = [s for s in wanted if s not in info.stores]
    if unknown:
        raise StoreError("{}: no store{} {} (it has: {})".format(
            store.display, "s" if len(unknown) > 1 else "", ", ".join(unknown),
            ", ".join(info.stores) or "no named stores; it is not multi-store"))


def _require_method(store, info, method):
    if method not in info.methods:
        raise StoreError("{}: the cloud does not offer the {} import method (it offers: {})"
                         .format(store.display, method, ", ".join(info.methods) or "none"))


def put(store, image_id, chunks, size=None):
    """GlanceStore.put for a configured store: direct, direct-or-import, or import."""
    method = getattr(store, "upload_method", DIRECT)
    targets = getattr(store, "target_stores", None) or []
    if method == IMPORT or len(targets) > 1 or getattr(store, "all_stores", False):
        return import_upload(store, image_id, chunks, size)
    store._require_queued(image_id)
    headers = {"Content-Type": "application/octet-stream"}
    if targets:
        _check_stores(store, discover(store), targets)
        headers["X-Image-Meta-Store"] = targets[0]
    try:
        _, sent = store._http.upload(
            "PUT", _path(store, image_id) + "/file", chunks, headers=headers, expect=(204,),
            image_id=image_id, size=size,
            wait_continue=CONTINUE_WAIT if method == AUTO else None)
    except StoreError as err:
        fields = getattr(err, "fields", {})
        if method == AUTO and fields.get("status") == 403 and fields.get("before_data"):
            _say(store, "{}: the cloud refuses direct uploads (HTTP 403 on PUT /file); using "
                        "the interoperable import (glance-direct) instead".format(store.display))
            return import_upload(store, image_id, chunks, size)
        raise
    sent.record = store.get(image_id)   # reported; transfer judges it
    return sent


def _import_body(store, method, targets, all_stores):
    body = {"method": {"name": method}}
    if all_stores:
        body["all_stores"] = True
        body["all_stores_must_succeed"] = getattr(store, "all_stores_must_succeed", True)
    elif targets:
        body["stores"] = list(targets)
        body["all_stores_must_succeed"] = getattr(store, "all_stores_must_succeed", True)
    return json.dumps(body).encode("utf-8")


def _start_import(store, image_id, method, targets, all_stores):
    reply = store._http.request(
        "POST", _path(store, image_id) + "/import",
        body=_import_body(store, method, targets, all_stores),
        headers={"Content-Type": "application/json"}, expect=(202,), accept=(403,),
        image_id=image_id, idempotent=False)
    if reply.status == 403:
        err = store._http.status_error(403, "Forbidden", "POST",
                                       _path(store, image_id) + "/import", image_id, reply.body)
        hint = ("; copy-image is admin-only by default (policy copy_image)"
                if method == "copy-image" else "")
        err.args = (err.args[0] + hint,)
        raise err


def import_upload(store, image_id, chunks, size=None):
    """Stage ``chunks`` into queued ``image_id``, import them (glance-direct), wait, verify."""
    info = discover(store)
    _require_method(store, info, "glance-direct")
    targets = getattr(store, "target_stores", None) or []
    _check_stores(store, info, targets)
    store._require_queued(image_id)
    _, sent = store._http.upload(
        "PUT", _path(store, image_id) + "/stage", chunks,
        headers={"Content-Type": "application/octet-stream"}, expect=(204,),
        image_id=image_id, size=size)
    all_stores = getattr(store, "all_stores", False)
    _start_import(store, image_id, "glance-direct", targets, all_stores)
    wanted = info.stores if all_stores else targets
    sent.record = wait_for_import(store, image_id, wanted,
                                  "importing {} bytes".format(sent.size))
    return sent   # with the record after the import; transfer judges it


def copy_image(store, image_id, stores=None, all_stores=False):
    """Copy active ``image_id`` into more stores (copy-image); return its final record."""
    record = store.get(image_id)
    if record["status"] != ACTIVE:
        raise ImageStateError(image_id=image_id, status=record["status"],
                              expected=ACTIVE + " (only an active image can be copied)",
                              url=store.url_of(image_id))
    info = discover(store)
    _require_method(store, info, "copy-image")
    have = record.get("stores") or []
    wanted = [s for s in info.stores if s not in have] if all_stores else list(stores or [])
    if not all_stores and not wanted:
        raise StoreError("image copy needs target stores (--stores a,b or --all-stores)")
    _check_stores(store, info, wanted)
    missing = [s for s in wanted if s not in have]
    if not missing:
        _say(store, "image {} is already in {}".format(image_id, ", ".join(wanted) or "all stores"))
        return record
    _start_import(store, image_id, "copy-image", missing, False)
    return wait_for_import(store, image_id, missing, "copying")


def _listed(value):
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def wait_for_import(store, image_id, wanted, doing):
    """Follow ``image_id`` until Glance has imported it into ``wanted`` (or failed)."""
    timeout = getattr(store, "import_timeout", IMPORT_TIMEOUT)
    pause = getattr(store, "poll_interval", 1.0)
    start = time.monotonic()
    next_notice = start + NOTICE_EVERY
    _say(store, "image {}: Glance is {}{}".format(
        image_id, doing, " into " + ", ".join(wanted) if wanted else ""))
    while True:
        record = store.get(image_id)
        status, props = record["status"], record.get("properties") or {}
        failed = _listed(props.get("os_glance_failed_import"))
        pending = _listed(props.get("os_glance_importing_to_stores"))
        must = getattr(store, "all_stores_must_succeed", True)
        # a failed glance-direct import puts the image back to queued
        if failed and (must or status != ACTIVE) or status in ("killed", "deleted", QUEUED):
            raise _import_failed(store, image_id, status, failed)
        landed = record.get("stores") or []
        # the import may not have marked its stores pending yet: wait until they are there
        if status == ACTIVE and not pending and all(w in landed or w in failed for w in wanted):
            if failed:
                _say(store, "image {}: import into {} failed; it is in {}".format(
                    image_id, ", ".join(failed), ", ".join(record.get("stores") or [])))
            return record
        now = time.monotonic()
        if now - start > timeout:
            raise StoreError("image {} at {}: Glance did not finish the import within {:.0f}s "
                             "(status {}, still importing into {}); look at the image's tasks"
                             .format(image_id, store.url_of(image_id), timeout, status,
                                     ", ".join(pending) or "?"), image_id=image_id)
        if now >= next_notice:
            next_notice = now + NOTICE_EVERY
            _say(store, "image {}: still {} ({}, {:.0f}s)".format(image_id, doing, status,
                                                                now - start))
        time.sleep(pause)
        pause = min(pause * 1.5, 5.0)


def _import_failed(store, image_id, status, failed):
    reason = task_failure(store, image_id)
    text = "Glance could not import image {} at {} (status {}{}){}".format(
        image_id, store.url_of(image_id), status,
        ", failed stores: " + ", ".join(failed) if failed else "",
        ": " + reason if reason else "; Glance gave no reason (see its log)")
    return StoreError(text, image_id=image_id, import_failed=True, glance_reason=reason)


def task_failure(store, image_id):
    """The message of the image's latest failed import task (tasks API, Glance 2.12+)."""
    try:
        reply = store._http.request("GET", _path(store, image_id) + "/tasks", accept=(404,))
        if reply.status != 200:
            return None
        tasks = reply.json("image tasks").get("tasks") or []
    except StoreError as e:
        log.debug("image %s: cannot read its tasks: %s", image_id, e)
        return None
    failed = [t for t in tasks if isinstance(t, dict) and t.get("status") == "failure"]
    failed.sort(key=lambda t: str(t.get("updated_at") or t.get("created_at") or ""))
    if not failed:
        return None
    return " ".join(str(failed[-1].get("message") or "").split())[:500] or None
