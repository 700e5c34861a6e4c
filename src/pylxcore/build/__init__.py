"""Building images: the builder and its cache keys, base root filesystems, the CLI's build records."""
