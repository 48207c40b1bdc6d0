"""The web app: Gradio tabs and API routes over the services. Edges only: no rules here."""
