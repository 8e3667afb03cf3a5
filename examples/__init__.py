"""Programs built on kvstore. ``examples.shortener`` is installed with the project
(``kvstore-shortener``); the scripts beside it are run from a checkout."""
