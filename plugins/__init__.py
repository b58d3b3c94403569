"""Built-in plugins, registered through the same plugin manager as third-party ones.

Each module implements hooks from :mod:`engine.hookspecs`; defaults are ``trylast=True`` so an
installed plugin's answer to a one-answer hook wins.
"""
