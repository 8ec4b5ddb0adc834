"""Entry point of the worker: `python -m deployments.serve [--name N] ...` (also `autopilot
worker`). Serving, recovery and liveness live in `autopilot/worker/`."""

from autopilot.worker.serve import main

if __name__ == "__main__":
    main()
