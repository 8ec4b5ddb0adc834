"""The worker side: serving the deployment (`serve`), finding and restarting dead runs
(`recovery`) and the liveness records of flow processes (`executors`)."""
