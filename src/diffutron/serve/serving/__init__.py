"""Serving classes, one per endpoint family, held on `app.state` and called by the thin routes of
`serve/routes.py`; beside each, the work item it hands the model worker (`serve/scheduler.py`).
"""
