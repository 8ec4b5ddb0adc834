"""Development tooling, never imported by the product: the stack's processes described once
(`pieces`) and a throwaway PostgreSQL cluster (`postgres`), `autopilot up` (`supervisor`), the
demo and the crash-consistency harness (`chaos`). The tests and the benchmarks start their
processes from `pieces` too."""
