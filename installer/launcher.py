"""Entry point of the frozen app: the same `crystal-studio` command line as the pip install.

``freeze_support`` lets the importer's spawned parse workers start inside the frozen executable."""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from crystal_studio.cli import main

    main()
