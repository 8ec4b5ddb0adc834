"""Code that runs inside an auto-pilot flow run's own process (the flow's side of Prefect)."""
