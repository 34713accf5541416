"""Moving a snapshot over the wire and into files: the remote app, what is trusted of it, the dev file, uploads."""
