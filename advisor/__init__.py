"""advisor: does this language model fit this GPU?

The package's top level stays light: the CLI imports the catalog (ORM) and the estimator only
inside the commands that need them, so `advisor --help` starts fast.
"""

__version__ = "0.1.0"
