"""`autopilot serve`: the study's champion behind an API key, reloaded when `models/<study>/current` changes.

    model   load the champion's weights (transformers chat model, or the digits CNN) and keep the current one
    chat    OpenAI-compatible chat completions: the request, generation, and the answer or its SSE stream
    app     the Starlette app (routes, Bearer key, errors) and the uvicorn server
"""
