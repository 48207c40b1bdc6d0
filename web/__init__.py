"""Layer 5, web (an edge, like app.py): the Gradio tabs and API routes over the services.
No rules here."""
