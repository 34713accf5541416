"""The snapshot app: routes, access, JSON resources, data in and out, the worker endpoint."""
