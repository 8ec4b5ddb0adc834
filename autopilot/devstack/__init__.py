"""Development tooling, never imported by the product: `autopilot up` (`supervisor`), the demo
and the crash-consistency harness (`chaos`)."""
