"""``--import``, ``--stores``, ``--all-stores``: how uploads reach a Glance (API v2).

Why a default of *auto*: a cloud with an import-only policy refuses ``PUT /file``;
the upload asks first (Expect: 100-continue) and, refused, stages and imports the same
data instead, saying so.  ``--import`` goes through stage + import from the start.
"""

import click

_OPTIONS = (
    click.option("--import", "use_import", is_flag=True,
                 help="Glance: stage the data and import it (glance-direct) instead of a "
                      "direct upload [default: direct, import when the cloud refuses it]."),
    click.option("--stores", "target_stores", metavar="ID,ID",
                 help="Glance multi-store: put the image into these stores "
                      "(two or more go through the import)."),
    click.option("--all-stores", is_flag=True,
                 help="Glance multi-store: put the image into every store; all must succeed."),
)


def split_stores(text):
    """'a, b' -> ['a', 'b'] (empty names dropped)."""
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def import_options(func):
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def say(line):
    click.echo("vhdport: " + line, err=True)


def apply_import_options(store, use_import=False, target_stores=None, all_stores=False):
    """Configure ``store`` for the options; a local or v1 store takes none of them."""
    stores = split_stores(target_stores)
    if stores and all_stores:
        raise click.UsageError("give --stores or --all-stores, not both")
    if getattr(store, "api_version", None) != 2:
        if use_import or stores or all_stores:
            raise click.UsageError("--import, --stores and --all-stores need a Glance store "
                                   "(API v2), not {}".format(store.display))
        return store
    store.place_uploads(use_import, stores=stores, all_stores=all_stores, notice=say)
    return store
