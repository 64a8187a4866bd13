"""``python -m hubscan.testing.fakehub``: serve a demo hub on loopback until it goes idle."""

from .demo import main

if __name__ == "__main__":
    main()
