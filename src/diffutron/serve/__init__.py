"""`diffutron serve`: an OpenAI-compatible HTTP server that batches requests (docs/serving.md).

`app.create_app` builds the FastAPI application around a loaded `Diffutron`; `server.run_server`
loads the model and runs it under uvicorn. The model is used by one worker thread only
(`scheduler.py`), fed by a bounded queue.
"""
