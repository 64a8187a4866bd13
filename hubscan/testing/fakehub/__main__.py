"""``python -m hubscan.testing.fakehub``: serve a demo hub on loopback until it goes idle."""

from . import _main

if __name__ == "__main__":
    _main()
