"""Layer 4, services: the actions a user can take, one function each, shared by every
edge.

The command line (app.py), the web app's tabs and its API routes all call these, so
the same action gives the same result wherever it starts. Edges only translate inputs
and outputs, and turn a core.errors.UserError into a message."""
