"""Run one download in a fresh process (for R8's memory and time bounds).

usage: download_one.py STORE_DIR IMAGE_ID SR_PATH
Exit 0 on success, 1 on a VhdportError (its one-line message printed), anything else is a bug.
"""

import sys

from vhdport.errors import VhdportError
from vhdport.stores.local import LocalStore
from vhdport.transfer import download


def main(argv):
    store_dir, image, sr = argv[1:4]
    try:
        result = download(LocalStore(store_dir), image, sr)
    except VhdportError as err:
        print("{}: {}".format(type(err).__name__, err))
        return 1
    print(result["root"]["uuid"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
