"""The REST shim: the seven `/api/simulation/auto-pilot/*` routes over the service side."""
