"""`diffutron serve`: an OpenAI-compatible HTTP server that batches requests (docs/serving.md).

`app.create_app` builds the FastAPI application around a loaded `Diffutron`: thin routes
(`routes.py`) call one serving class per endpoint family (`serving/`), which hands work items to
the model worker (`scheduler.py`), one thread fed by a bounded queue. `server.run_server` loads
the model and runs the application under uvicorn.
"""
