"""A URL shortener built on kvstore: web servers that take ranges of ids from a counter in
the store, keep links in the store, and serve redirects from a cache that a watch keeps
true. See ``examples/shortener/README.md``."""
